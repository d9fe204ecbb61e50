#include "core/registry.hpp"

#include <cstdio>

#include <stdexcept>

#include "core/json_file.hpp"
#include "core/parallel.hpp"

namespace dsv3 {
namespace {

template <class T>
T& find_named(std::vector<T>& v, const std::string& name, const char* what) {
  for (auto& t : v)
    if (t.name == name) return t;
  std::string known;
  for (auto& t : v) known += (known.empty() ? "" : ", ") + t.name;
  throw std::invalid_argument(std::string("unknown ") + what + " '" + name + "' (known: " + known + ")");
}

}  // namespace

Tensor& Io::input(const std::string& name) {
  for (auto& t : in)
    if (t.name() == name) return t;
  throw std::invalid_argument("no input tensor named '" + name + "'");
}

const Tensor& Io::input(const std::string& name) const {
  return const_cast<Io*>(this)->input(name);
}

Tensor& Io::output(const std::string& name) {
  for (auto& t : out)
    if (t.name() == name) return t;
  throw std::invalid_argument("no output tensor named '" + name + "'");
}

const Tolerance& Variant::tolerance_for(const std::string& output) const {
  if (auto it = tolerances.find(output); it != tolerances.end()) return it->second;
  if (auto it = tolerances.find("*"); it != tolerances.end()) return it->second;
  throw std::logic_error("variant " + component + "/" + name + " declares no tolerance for output '" +
                         output + "'");
}

Registry& Registry::instance() {
  static Registry r;
  return r;
}

void Registry::add(Component c) {
  for (auto& existing : components_)
    if (existing.name == c.name) throw std::logic_error("component registered twice: " + c.name);
  components_.push_back(std::move(c));
}

void Registry::add(Variant v) {
  component(v.component);  // throws if unknown
  for (auto& existing : variants_)
    if (existing->component == v.component && existing->name == v.name)
      throw std::logic_error("variant registered twice: " + v.component + "/" + v.name);
  variants_.push_back(std::make_unique<Variant>(std::move(v)));
}

namespace {
std::filesystem::path& artifact_dir() {
  static std::filesystem::path dir;
  return dir;
}
}  // namespace

const std::filesystem::path& study_artifact_dir() { return artifact_dir(); }
void set_study_artifact_dir(std::filesystem::path dir) { artifact_dir() = std::move(dir); }

void Registry::add_study(Study s) {
  component(s.component);  // throws if unknown
  for (auto& existing : studies_)
    if (existing.name == s.name) {
      existing = std::move(s);
      return;
    }
  studies_.push_back(std::move(s));
}

const Component& Registry::component(const std::string& name) const {
  return find_named(const_cast<std::vector<Component>&>(components_), name, "component");
}

std::vector<const Variant*> Registry::variants(const std::string& comp) const {
  std::vector<const Variant*> out;
  for (auto& v : variants_)
    if (v->component == comp) out.push_back(v.get());
  return out;
}

const Variant& Registry::variant(const std::string& comp, const std::string& name) const {
  for (auto* v : variants(comp))
    if (v->name == name) return *v;
  throw std::invalid_argument("unknown variant '" + comp + "/" + name + "'");
}

namespace {

class FnRunner final : public Runner {
 public:
  FnRunner(std::function<void()> fn, int threads) : fn_(std::move(fn)), threads_(threads) {}
  void run() override {
    if (threads_ <= 0) return fn_();
    set_thread_count(threads_);
    try {
      fn_();
    } catch (...) {
      set_thread_count(0);
      throw;
    }
    set_thread_count(0);
  }

 private:
  std::function<void()> fn_;
  int threads_;
};

}  // namespace

std::unique_ptr<Runner> make_cpu_runner(std::function<void()> fn, int threads) {
  return std::make_unique<FnRunner>(std::move(fn), threads);
}

void add_reference_variants(const std::string& component, std::string description,
                            std::function<void(const Case&, Io&)> run, std::string why_invariant, double max_flops) {
  const auto flops = Registry::instance().component(component).flops;
  Variant v;
  v.component = component;
  v.name = "ref";
  v.description = std::move(description);
  v.prepare = [run](const Case& k, Io& io) { return make_cpu_runner([run, k, &io] { run(k, io); }); };
  v.tolerances["*"] = Tolerance::bit_exact("baseline: every other variant is compared with it, it is never checked against itself");
  Variant one = v;
  Registry::instance().add(std::move(v));

  one.name = "ref_1thread";
  one.description = "the reference on one thread: its output must not depend on the thread count";
  one.prepare = [run](const Case& k, Io& io) { return make_cpu_runner([run, k, &io] { run(k, io); }, 1); };
  one.unsupported = [flops, max_flops](const Case& k) -> std::string {
    char buf[64];
    std::snprintf(buf, sizeof buf, "thread-count check on cases up to %.0e FLOPs", max_flops);
    return flops(k) > max_flops ? buf : "";
  };
  one.tolerances["*"] = Tolerance::bit_exact(std::move(why_invariant));
  Registry::instance().add(std::move(one));
}

std::vector<Case> load_shape_cases(
    const std::string& component,
    const std::function<std::vector<Case>(const nlohmann::json& entry, const std::string& at)>& parse) {
  const auto path = datasets_dir() / "shapes" / (component + ".json");
  const nlohmann::json j = load_json_file(path);
  const std::string where = path.string();
  const auto list = json_field<nlohmann::json>(j, "cases", where);
  if (!list.is_array()) throw InputError(where + ": field 'cases' must be an array");
  std::vector<Case> cases;
  for (std::size_t i = 0; i < list.size(); ++i) {
    const std::string at = where + ": cases[" + std::to_string(i) + "]";
    try {
      for (Case& c : parse(list[i], at)) cases.push_back(std::move(c));
    } catch (const std::invalid_argument& e) {
      throw InputError(at + ": " + e.what());
    } catch (const nlohmann::json::exception& e) {
      throw InputError(at + ": " + e.what());
    }
  }
  return cases;
}

}  // namespace dsv3
