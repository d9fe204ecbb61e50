# Dependencies from .deps/ (scripts/device-prepare.sh), for machines without Debian's packages:
# the same imported target names that find_package would give.
set(DSV3_DEPS ${CMAKE_SOURCE_DIR}/.deps)
if(NOT EXISTS ${DSV3_DEPS}/include/eigen3)
  message(FATAL_ERROR "DSV3_BUNDLED_DEPS=ON but ${DSV3_DEPS} is missing: run scripts/device-prepare.sh first")
endif()
add_library(Eigen3::Eigen INTERFACE IMPORTED)
target_include_directories(Eigen3::Eigen INTERFACE ${DSV3_DEPS}/include/eigen3)
add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
target_include_directories(nlohmann_json::nlohmann_json INTERFACE ${DSV3_DEPS}/include)
add_library(CLI11::CLI11 INTERFACE IMPORTED)
target_include_directories(CLI11::CLI11 INTERFACE ${DSV3_DEPS}/include)
set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
set(BUILD_GMOCK OFF CACHE BOOL "" FORCE)
add_subdirectory(${DSV3_DEPS}/googletest ${CMAKE_BINARY_DIR}/googletest EXCLUDE_FROM_ALL)
if(NOT TARGET GTest::gtest)
  add_library(GTest::gtest ALIAS gtest)
endif()
add_library(benchmark::benchmark SHARED IMPORTED)
set_target_properties(benchmark::benchmark PROPERTIES
  IMPORTED_LOCATION ${DSV3_DEPS}/lib/libbenchmark.so
  INTERFACE_INCLUDE_DIRECTORIES ${DSV3_DEPS}/include)
set(CMAKE_BUILD_RPATH ${DSV3_DEPS}/lib)
