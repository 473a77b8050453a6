#include "common/MetricsRegistry.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace tether {

struct MetricsRegistry::FamilyData {
  std::string name;
  std::string help;
  MetricType type = MetricType::kCounter;
  MetricLabels label_names;
  Collect collect;                         // callback families
  std::map<MetricLabels, double> samples;  // stored families (map nodes do not move)
};

namespace {

bool name_char(char c, bool first, bool colon) {
  const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  if (alpha || (colon && c == ':')) return true;
  return !first && c >= '0' && c <= '9';
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

void append_sample(std::string& out, const std::string& name, const MetricLabels& label_names,
                   const MetricLabels& values, double value) {
  out += name;
  if (!label_names.empty()) {
    out += '{';
    for (std::size_t i = 0; i < label_names.size(); ++i) {
      if (i > 0) out += ',';
      out += label_names[i];
      out += "=\"";
      out += escape_label_value(i < values.size() ? values[i] : std::string());
      out += '"';
    }
    out += '}';
  }
  out += ' ';
  out += format_metric_value(value);
  out += '\n';
}

}  // namespace

bool valid_metric_name(std::string_view name) noexcept {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (!name_char(name[i], i == 0, true)) return false;
  }
  return true;
}

bool valid_label_name(std::string_view name) noexcept {
  if (name.empty() || name.substr(0, 2) == "__") return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (!name_char(name[i], i == 0, false)) return false;
  }
  return true;
}

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

std::string escape_help(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

std::string format_metric_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[32];
  // Integers below 2^53 are exact in a double: printed without exponent or fraction.
  if (value == std::floor(value) && std::fabs(value) < 9007199254740992.0) {
    (void)std::snprintf(buf, sizeof buf, "%.0f", value);
    return buf == std::string("-0") ? "0" : buf;
  }
  for (int precision = 15; precision <= 17; ++precision) {
    (void)std::snprintf(buf, sizeof buf, "%.*g", precision, value);
    if (std::strtod(buf, nullptr) == value) break;
  }
  return buf;
}

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

std::size_t MetricsRegistry::add(const std::string& name, const std::string& help, MetricType type,
                                 const MetricLabels& label_names, Collect collect, bool& ok) {
  ok = false;
  if (!valid_metric_name(name)) {
    problems_.push_back("invalid metric name \"" + name + "\"");
    return 0;
  }
  if (type == MetricType::kCounter && !ends_with(name, "_total")) {
    problems_.push_back("counter " + name + " does not end in _total");
    return 0;
  }
  for (const auto& label : label_names) {
    if (!valid_label_name(label) || std::count(label_names.begin(), label_names.end(), label) > 1) {
      problems_.push_back("invalid or repeated label name \"" + label + "\" in " + name);
      return 0;
    }
  }
  if (by_name_.count(name) != 0) {
    problems_.push_back("metric " + name + " registered twice");
    return 0;
  }
  auto family = std::make_unique<FamilyData>();
  family->name = name;
  family->help = help;
  family->type = type;
  family->label_names = label_names;
  family->collect = std::move(collect);
  families_.push_back(std::move(family));
  by_name_[name] = families_.size() - 1;
  ok = true;
  return families_.size() - 1;
}

double* MetricsRegistry::slot(std::size_t index, const MetricLabels& values) {
  FamilyData& family = *families_.at(index);
  if (values.size() != family.label_names.size()) {
    problems_.push_back("metric " + family.name + " given " + std::to_string(values.size()) +
                        " label value(s) for " + std::to_string(family.label_names.size()) +
                        " label(s)");
    return nullptr;
  }
  return &family.samples.try_emplace(values, 0.0).first->second;
}

MetricsRegistry::Family<Counter> MetricsRegistry::counter_family(const std::string& name,
                                                                 const std::string& help,
                                                                 const MetricLabels& label_names) {
  bool ok = false;
  const std::size_t index = add(name, help, MetricType::kCounter, label_names, nullptr, ok);
  return ok ? Family<Counter>(this, index) : Family<Counter>();
}

Counter MetricsRegistry::counter(const std::string& name, const std::string& help) {
  return counter_family(name, help, {}).with({});
}

MetricsRegistry::Family<Gauge> MetricsRegistry::gauge_family(const std::string& name,
                                                             const std::string& help,
                                                             const MetricLabels& label_names) {
  bool ok = false;
  const std::size_t index = add(name, help, MetricType::kGauge, label_names, nullptr, ok);
  return ok ? Family<Gauge>(this, index) : Family<Gauge>();
}

Gauge MetricsRegistry::gauge(const std::string& name, const std::string& help) {
  return gauge_family(name, help, {}).with({});
}

void MetricsRegistry::add_callback(const std::string& name, const std::string& help,
                                   MetricType type, const MetricLabels& label_names,
                                   Collect collect) {
  bool ok = false;
  (void)add(name, help, type, label_names, std::move(collect), ok);
}

void MetricsRegistry::add_callback_gauge(const std::string& name, const std::string& help,
                                         std::function<double()> read) {
  add_callback(name, help, MetricType::kGauge, {}, [read = std::move(read)] {
    return std::vector<Sample>{{{}, read()}};
  });
}

std::string MetricsRegistry::render() const {
  std::string out;
  for (const auto& [name, index] : by_name_) {
    const FamilyData& family = *families_[index];
    out += "# HELP " + name + " " + escape_help(family.help) + "\n";
    out += "# TYPE " + name + (family.type == MetricType::kCounter ? " counter\n" : " gauge\n");
    if (family.collect) {
      std::vector<Sample> samples = family.collect();
      std::stable_sort(samples.begin(), samples.end(),
                       [](const Sample& a, const Sample& b) { return a.labels < b.labels; });
      for (const auto& sample : samples) {
        append_sample(out, name, family.label_names, sample.labels, sample.value);
      }
    } else {
      for (const auto& [values, value] : family.samples) {
        append_sample(out, name, family.label_names, values, value);
      }
    }
  }
  return out;
}

void MetricsRegistry::reset() {
  for (auto& family : families_) {
    for (auto& [values, value] : family->samples) value = 0;
  }
}

}  // namespace tether
