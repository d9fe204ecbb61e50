// Nominal hardware profiles (datasets/hardware/<id>.json; schema and units in datasets/README.md):
// one GPU's view plus its scale-up (NVLink) and scale-out (NIC) network. Values are datasheet
// numbers, dense tensor-core peaks, NVLink per GPU per direction; measured numbers go into result
// bundles, not here.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace dsv3 {

struct HardwareProfile {
  std::filesystem::path source;  // file it was loaded from

  std::string id;
  std::string name;
  std::string vendor;
  std::string arch;                   // "hopper" | "blackwell"
  int64_t sms = 0;                    // streaming multiprocessors
  double memory_gib = 0;              // GiB (2^30 bytes), nominal HBM
  double memory_bandwidth_gbs = 0;    // GB/s (1e9 B/s), nominal HBM peak
  double dense_bf16_tflops = 0;       // 1e12 FLOP/s, dense
  double dense_fp8_tflops = 0;        // 1e12 FLOP/s, dense
  double l2_mib = 0;                  // MiB (2^20 bytes)
  double nvlink_bandwidth_gbs = 0;    // GB/s per GPU, one direction, nominal
  int64_t nvlink_domain_gpus = 0;     // GPUs in one NVLink domain
  double nic_gbps = 0;                // Gbit/s line rate of one scale-out NIC
  double nics_per_gpu = 0;            // scale-out NICs per GPU
  std::map<std::string, std::string> sources;  // field (or group) -> source; string values only

  // SI conversions for roofline and communication models.
  double memory_bytes() const { return memory_gib * 1073741824.0; }
  double memory_bandwidth_bytes_per_s() const { return memory_bandwidth_gbs * 1e9; }
  double nvlink_bytes_per_s() const { return nvlink_bandwidth_gbs * 1e9; }
  double scale_out_bytes_per_s() const { return nic_gbps * 1e9 / 8.0 * nics_per_gpu; }  // per GPU
  double l2_bytes() const { return l2_mib * 1048576.0; }
};

// Loads and validates one file; InputError("<file>: field '<f>' ...") on any problem.
HardwareProfile load_hardware_profile(const std::filesystem::path& path);
// datasets_dir()/hardware/<id>.json; the error lists the available ids. Checks id == file stem.
HardwareProfile find_hardware(const std::string& id);
// Sorted ids of datasets_dir()/hardware/*.json.
std::vector<std::string> list_hardware();

}  // namespace dsv3
