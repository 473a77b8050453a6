// Counters and gauges for `GET /metrics` (server, gateway) and the agent's metrics file,
// rendered in the Prometheus text exposition format 0.0.4 (docs/metrics.md).
//
// A family is a metric name with its help, type and label names; its samples are its label
// value sets. Stored families hold their values here and are updated through handles
// (Counter, Gauge): plain doubles, no atomics (one event loop per process, no threads).
// Callback families are read when rendered (a hub's connection count, counters a component
// already keeps). A default-constructed handle is detached: updating it does nothing, so a
// component can be used without a registry. Handles point into the registry: it must outlive
// them. Rendering is in a stable order: families by name, samples by label values.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tether {

enum class MetricType { kCounter, kGauge };

using MetricLabels = std::vector<std::string>;

// One stored sample: counters only go up.
class Counter {
 public:
  Counter() = default;
  void inc(double by = 1) noexcept {
    if (value_ != nullptr && by > 0) *value_ += by;
  }
  [[nodiscard]] double value() const noexcept { return value_ != nullptr ? *value_ : 0; }
  [[nodiscard]] bool attached() const noexcept { return value_ != nullptr; }

 private:
  friend class MetricsRegistry;
  explicit Counter(double* value) : value_(value) {}
  double* value_ = nullptr;
};

class Gauge {
 public:
  Gauge() = default;
  void set(double v) noexcept {
    if (value_ != nullptr) *value_ = v;
  }
  void inc(double by = 1) noexcept {
    if (value_ != nullptr) *value_ += by;
  }
  void dec(double by = 1) noexcept {
    if (value_ != nullptr) *value_ -= by;
  }
  [[nodiscard]] double value() const noexcept { return value_ != nullptr ? *value_ : 0; }

 private:
  friend class MetricsRegistry;
  explicit Gauge(double* value) : value_(value) {}
  double* value_ = nullptr;
};

class MetricsRegistry {
 public:
  struct Sample {
    MetricLabels labels;  // values, in the order of the family's label names
    double value = 0;
  };
  using Collect = std::function<std::vector<Sample>()>;

  // A labelled family of stored samples; with() makes the sample (at 0) on first use.
  template <class Handle>
  class Family {
   public:
    Family() = default;
    // Not [[nodiscard]]: calling it only to make the sample (at 0) is a use.
    Handle with(const MetricLabels& values) const {
      return registry_ != nullptr ? Handle(registry_->slot(index_, values)) : Handle();
    }

   private:
    friend class MetricsRegistry;
    Family(MetricsRegistry* registry, std::size_t index) : registry_(registry), index_(index) {}
    MetricsRegistry* registry_ = nullptr;
    std::size_t index_ = 0;
  };

  MetricsRegistry();
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Registration. A name may be registered once; an invalid name or label name, a counter
  // whose name does not end in _total, or a second registration gives a detached handle and
  // a problem (problems()). Label values given to with() must match the label names in
  // number; others are detached too.
  [[nodiscard]] Family<Counter> counter_family(const std::string& name, const std::string& help,
                                               const MetricLabels& label_names);
  [[nodiscard]] Counter counter(const std::string& name, const std::string& help);
  [[nodiscard]] Family<Gauge> gauge_family(const std::string& name, const std::string& help,
                                           const MetricLabels& label_names);
  [[nodiscard]] Gauge gauge(const std::string& name, const std::string& help);
  // Samples read at render time (the callback runs inside render()).
  void add_callback(const std::string& name, const std::string& help, MetricType type,
                    const MetricLabels& label_names, Collect collect);
  void add_callback_gauge(const std::string& name, const std::string& help,
                          std::function<double()> read);

  // The exposition text: # HELP, # TYPE, then the samples, for every family.
  [[nodiscard]] std::string render() const;
  // Every stored sample back to 0 (callbacks stay); for tests.
  void reset();
  // Registration mistakes (programming errors), for tests and the edges to report.
  [[nodiscard]] const std::vector<std::string>& problems() const noexcept { return problems_; }

 private:
  struct FamilyData;
  std::size_t add(const std::string& name, const std::string& help, MetricType type,
                  const MetricLabels& label_names, Collect collect, bool& ok);
  double* slot(std::size_t index, const MetricLabels& values);

  std::vector<std::unique_ptr<FamilyData>> families_;
  std::map<std::string, std::size_t> by_name_;
  std::vector<std::string> problems_;
};

// Metric and label names per the data model: [a-zA-Z_:][a-zA-Z0-9_:]* (labels: no ':',
// and no leading "__", which is reserved).
[[nodiscard]] bool valid_metric_name(std::string_view name) noexcept;
[[nodiscard]] bool valid_label_name(std::string_view name) noexcept;
// Label value escaping of the text format: backslash, double quote and newline.
[[nodiscard]] std::string escape_label_value(std::string_view value);
// HELP text escaping: backslash and newline.
[[nodiscard]] std::string escape_help(std::string_view text);
// A sample value: integers without a fraction, +Inf, -Inf, NaN, else shortest round-trip.
[[nodiscard]] std::string format_metric_value(double value);

}  // namespace tether
