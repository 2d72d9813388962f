//! Issues 7 and 18: the Grafana dashboard (dashboards/supervisor.json) and the Prometheus alert rules
//! (dashboards/alerts.yml), checked three ways:
//!
//! - structure: the dashboard is valid against Grafana's published dashboard JSON schema
//!   (tests/fixtures/schemas/, checked with Python's `jsonschema` from the test venv) and
//!   imports into a current Grafana (variables for job, namespace, pod, container, instance
//!   and program, datasource references, units, layout) — there is no Grafana binary in Debian,
//!   so this is checked on the JSON;
//! - drift: every metric name, label name (in selectors, `by`/`on`/... clauses and alert
//!   templates) and enumerated label value (`state`, `cause`) the dashboard and the rules use
//!   is one a real scrape of the real binary exposes; unit tests prove the check fails on bad
//!   expressions;
//! - behaviour: `promtool check rules` and `promtool test rules` (dashboards/tests/, alerts and
//!   recording rules; the rules files are read with PyYAML), and a real Prometheus scraping two
//!   real supervisors — one whose programs crash on purpose, one with the eBPF probe whose
//!   program is killed by another — where every dashboard query returns data and the alerts
//!   fire for the programs they are about only.
//!
//! Loopback only; every process started here is killed by its pid when its guard is dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use e2e::*;

const T: Duration = Duration::from_secs(20);

fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("dashboards")
}

fn read(name: &str) -> String {
    let p = dashboards_dir().join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn dashboard() -> Value {
    serde_json::from_str(&read("supervisor.json")).expect("dashboards/supervisor.json is JSON")
}

// ---------------------------------------------------------------------------------------------
// PromQL: just enough of a lexer to find every metric name, label matcher and grouping label.

mod promql {
    use std::collections::BTreeSet;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Tok {
        Ident(String),
        Str(String),
        Num(String),
        Punct(&'static str),
    }

    const PUNCT2: [&str; 6] = ["=~", "!~", "!=", "==", "<=", ">="];
    const PUNCT1: [&str; 18] = [
        "{", "}", "(", ")", "[", "]", ",", "=", "<", ">", "+", "-", "*", "/", "%", "^", "@", ":",
    ];

    pub fn lex(src: &str) -> Result<Vec<Tok>, String> {
        let chars: Vec<char> = src.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                i += 1;
            } else if c == '#' {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            } else if c == '"' || c == '\'' || c == '`' {
                i += 1;
                let mut s = String::new();
                loop {
                    let Some(&d) = chars.get(i) else {
                        return Err(format!("unterminated string in `{src}`"));
                    };
                    i += 1;
                    if d == c {
                        break;
                    }
                    if d == '\\' && c != '`' {
                        let Some(&e) = chars.get(i) else {
                            return Err(format!("unterminated string in `{src}`"));
                        };
                        i += 1;
                        s.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        });
                    } else {
                        s.push(d);
                    }
                }
                if let Some(at) = s.find('$') {
                    if s[at + 1..]
                        .starts_with(|c: char| c.is_ascii_alphabetic() || "_{".contains(c))
                    {
                        return Err(format!(
                            "`{src}` still has a Grafana variable (`{}`)",
                            &s[at..]
                        ));
                    }
                }
                out.push(Tok::Str(s));
            } else if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
            {
                // Numbers and durations: 10, 0.5, 1e-3, 0x1f, 5m, 1h30m.
                let start = i;
                i += 1;
                while let Some(&d) = chars.get(i) {
                    let exponent_sign = (d == '+' || d == '-')
                        && matches!(chars[i - 1], 'e' | 'E')
                        && chars[start..i - 1]
                            .iter()
                            .all(|c| c.is_ascii_digit() || *c == '.');
                    if d.is_ascii_alphanumeric() || d == '.' || d == '_' || exponent_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
                out.push(Tok::Num(chars[start..i].iter().collect()));
            } else if c.is_ascii_alphabetic() || c == '_' {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '_' || *d == ':')
                {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            } else if c == '$' {
                return Err(format!(
                    "`{src}` still has a Grafana variable (`{}`)",
                    chars[i..].iter().take(20).collect::<String>()
                ));
            } else {
                let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
                let one = c.to_string();
                if let Some(p) = PUNCT2.iter().find(|p| **p == two) {
                    out.push(Tok::Punct(p));
                    i += 2;
                } else if let Some(p) = PUNCT1.iter().find(|p| **p == one) {
                    out.push(Tok::Punct(p));
                    i += 1;
                } else {
                    return Err(format!("unexpected character `{c}` in `{src}`"));
                }
            }
        }
        Ok(out)
    }

    /// A vector selector: `metric{label op "value", ...}` (metric absent for `{...}` only).
    #[derive(Debug)]
    pub struct Selector {
        pub metric: Option<String>,
        pub matchers: Vec<(String, &'static str, String)>,
    }

    /// What an expression refers to.
    #[derive(Debug, Default)]
    pub struct Refs {
        pub metrics: BTreeSet<String>,
        pub selectors: Vec<Selector>,
        /// Labels in `by`, `without`, `on`, `ignoring`, `group_left`, `group_right` lists.
        pub grouping: BTreeSet<String>,
    }

    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    /// Operators, modifiers, aggregations and number literals: never metric names.
    const KEYWORDS: [&str; 22] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "atan2",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];

    pub fn refs(src: &str) -> Result<Refs, String> {
        let toks = lex(src)?;
        let mut r = Refs::default();
        let mut i = 0;
        while i < toks.len() {
            match &toks[i] {
                Tok::Ident(name) => {
                    let lower = name.to_ascii_lowercase();
                    let call = toks.get(i + 1) == Some(&Tok::Punct("("));
                    i += 1;
                    if GROUPING.contains(&lower.as_str()) {
                        if call {
                            i += 1;
                            loop {
                                match toks.get(i) {
                                    Some(Tok::Ident(l)) => {
                                        r.grouping.insert(l.clone());
                                    }
                                    Some(Tok::Punct(",")) => {}
                                    Some(Tok::Punct(")")) => break,
                                    other => {
                                        return Err(format!(
                                            "unexpected {other:?} in a label list of `{src}`"
                                        ))
                                    }
                                }
                                i += 1;
                            }
                            i += 1;
                        }
                    } else if !(call || KEYWORDS.contains(&lower.as_str())) {
                        r.metrics.insert(name.clone());
                        let matchers = if toks.get(i) == Some(&Tok::Punct("{")) {
                            let (m, next) = selector(&toks, i, src)?;
                            i = next;
                            m
                        } else {
                            Vec::new()
                        };
                        r.selectors.push(Selector {
                            metric: Some(name.clone()),
                            matchers,
                        });
                    }
                }
                Tok::Punct("{") => {
                    let (matchers, next) = selector(&toks, i, src)?;
                    i = next;
                    let metric = matchers
                        .iter()
                        .find(|(l, op, _)| l == "__name__" && *op == "=")
                        .map(|(_, _, v)| v.clone());
                    if let Some(m) = &metric {
                        r.metrics.insert(m.clone());
                    }
                    r.selectors.push(Selector { metric, matchers });
                }
                _ => i += 1,
            }
        }
        Ok(r)
    }

    type Matchers = Vec<(String, &'static str, String)>;

    /// Parses `{...}` starting at `open`; returns the matchers and the index after `}`.
    fn selector(toks: &[Tok], open: usize, src: &str) -> Result<(Matchers, usize), String> {
        let mut out = Vec::new();
        let mut i = open + 1;
        loop {
            match toks.get(i) {
                Some(Tok::Punct("}")) => return Ok((out, i + 1)),
                Some(Tok::Punct(",")) => i += 1,
                Some(Tok::Ident(label)) => {
                    let op = match toks.get(i + 1) {
                        Some(Tok::Punct(op @ ("=" | "!=" | "=~" | "!~"))) => *op,
                        other => return Err(format!("`{src}`: {other:?} after label `{label}`")),
                    };
                    let Some(Tok::Str(value)) = toks.get(i + 2) else {
                        return Err(format!("`{src}`: no string after `{label}{op}`"));
                    };
                    out.push((label.clone(), op, value.clone()));
                    i += 3;
                }
                other => return Err(format!("unexpected {other:?} in a selector of `{src}`")),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What a scrape exposes.

/// Metric name → label name → every value seen.
#[derive(Debug, Default)]
struct Exposition {
    metrics: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut metrics: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let labels = metrics.entry(line[..end].to_string()).or_default();
            let Some(mut rest) = line[end..].strip_prefix('{') else {
                continue;
            };
            // key="value" pairs, separated by commas, up to `}`.
            while let Some((key, after)) = rest.split_once("=\"") {
                let mut value = String::new();
                let mut chars = after.char_indices();
                let mut end = after.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, o)) => value.push(o),
                            None => {}
                        },
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                labels
                    .entry(key.trim_start_matches(',').trim().to_string())
                    .or_default()
                    .insert(value);
                rest = &after[end..];
                if rest.starts_with('}') {
                    break;
                }
            }
        }
        Exposition { metrics }
    }

    /// Label names of `metric`; `up` is Prometheus' own series (target labels only).
    fn labels_of(&self, metric: &str) -> Option<BTreeSet<String>> {
        if metric == "up" {
            return Some(BTreeSet::new());
        }
        self.metrics
            .get(metric)
            .map(|l| l.keys().cloned().collect())
    }
}

/// Labels that Prometheus adds to every series of a target: `job` and `instance` always, and
/// in Kubernetes `namespace`, `pod` and `container` (prometheus-operator adds them; so does the
/// relabelling in examples/kubernetes/prometheus-scrape-annotations.yml).
const DASHBOARD_TARGET_LABELS: [&str; 5] = ["job", "instance", "namespace", "pod", "container"];
/// The rules may also use `probe_expected`, a scrape-time label users set on the targets where
/// the eBPF probe must be loaded (dashboards/README.md).
const RULES_TARGET_LABELS: [&str; 6] = [
    "job",
    "instance",
    "namespace",
    "pod",
    "container",
    "probe_expected",
];
/// Labels whose values are not a fixed set (no value check for them): names, and the signal
/// and sender of what the probe has seen so far.
const OPEN_LABELS: [&str; 10] = [
    "job",
    "instance",
    "namespace",
    "pod",
    "container",
    "program",
    "group",
    "version",
    "signal",
    "sender",
];

/// Everything in `expr` that the scrape `exp` does not expose.
fn expr_problems(expr: &str, exp: &Exposition, target_labels: &[&str]) -> Vec<String> {
    let refs = match promql::refs(expr) {
        Ok(r) => r,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    let mut available: BTreeSet<String> = target_labels.iter().map(|s| s.to_string()).collect();
    for m in &refs.metrics {
        match exp.labels_of(m) {
            Some(labels) => available.extend(labels),
            None => problems.push(format!("`{expr}`: the supervisor exports no metric `{m}`")),
        }
    }
    let all_labels: BTreeSet<String> = exp
        .metrics
        .values()
        .flat_map(|l| l.keys().cloned())
        .collect();
    for s in &refs.selectors {
        let own = match &s.metric {
            Some(m) => match exp.labels_of(m) {
                Some(l) => l,
                None => continue, // reported above
            },
            None => all_labels.clone(),
        };
        for (label, op, value) in &s.matchers {
            if label == "__name__" || target_labels.contains(&label.as_str()) {
                continue;
            }
            let what = s.metric.as_deref().unwrap_or("no exported metric");
            if !own.contains(label) {
                problems.push(format!("`{expr}`: {what} has no label `{label}`"));
                continue;
            }
            if OPEN_LABELS.contains(&label.as_str()) || value.is_empty() {
                continue;
            }
            let Some(seen) = s
                .metric
                .as_ref()
                .and_then(|m| exp.metrics.get(m))
                .and_then(|l| l.get(label))
            else {
                continue;
            };
            let plain =
                |v: &str| !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            let wanted: Vec<&str> = match *op {
                "=" | "!=" => vec![value.as_str()],
                _ if value.split('|').all(plain) => value.split('|').collect(),
                _ => Vec::new(), // a real regex: not checked
            };
            for v in wanted {
                if !seen.contains(v) {
                    problems.push(format!(
                        "`{expr}`: {what} never has {label}=\"{v}\" (it has {seen:?})"
                    ));
                }
            }
        }
    }
    for g in &refs.grouping {
        if !available.contains(g) {
            problems.push(format!(
                "`{expr}`: groups or matches by `{g}`, a label none of {:?} has",
                refs.metrics
            ));
        }
    }
    problems
}

/// `label_values(selector, label)` or `label_values(label)` → (selector, label).
fn parse_label_values(q: &str) -> Option<(Option<String>, String)> {
    let inner = q.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    let (mut depth, mut quoted, mut split) = (0i32, false, None);
    for (i, c) in inner.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '{' | '(' if !quoted => depth += 1,
            '}' | ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => split = Some(i),
            _ => {}
        }
    }
    Some(match split {
        Some(i) => (
            Some(inner[..i].trim().to_string()),
            inner[i + 1..].trim().to_string(),
        ),
        None => (None, inner.trim().to_string()),
    })
}

/// What a Grafana variable query (`label_values(...)`) uses that the scrape does not expose.
fn variable_problems(query: &str, exp: &Exposition, target_labels: &[&str]) -> Vec<String> {
    let Some((selector, label)) = parse_label_values(query) else {
        return vec![format!(
            "variable query `{query}`: only label_values(...) is supported"
        )];
    };
    let mut problems = Vec::new();
    let mut available: BTreeSet<String> = target_labels.iter().map(|s| s.to_string()).collect();
    match &selector {
        Some(sel) => {
            problems.extend(expr_problems(sel, exp, target_labels));
            if let Ok(r) = promql::refs(sel) {
                for m in &r.metrics {
                    available.extend(exp.labels_of(m).unwrap_or_default());
                }
            }
        }
        None => available.extend(exp.metrics.values().flat_map(|l| l.keys().cloned())),
    }
    if !available.contains(&label) {
        problems.push(format!(
            "variable query `{query}`: no label `{label}` on what it selects"
        ));
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// The dashboard's queries and Grafana's variables.

/// Every panel, with the panels of collapsed rows.
fn all_panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// (where, expr) of every panel target and annotation query.
fn panel_queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in all_panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                let place = format!("panel `{}` {}", p["title"], t["refId"]);
                out.push((place, e.to_string()));
            }
        }
    }
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(e) = a["expr"].as_str() {
            out.push((format!("annotation `{}`", a["name"]), e.to_string()));
        }
    }
    out
}

/// (name, query) of every `query` variable.
fn variable_queries(d: &Value) -> Vec<(String, String)> {
    d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let q = v["query"]
                .as_str()
                .or(v["query"]["query"].as_str())
                .unwrap_or_default();
            (v["name"].as_str().unwrap_or("?").to_string(), q.to_string())
        })
        .collect()
}

/// Replaces Grafana's `$name` / `${name}` / `${name:format}` by `vars`; unknown ones stay.
fn substitute(expr: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(b) => match b.find('}') {
                Some(end) => (b[..end].split(':').next().unwrap_or(""), end + 2),
                None => ("", 0),
            },
            None => {
                let n = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..n], n)
            }
        };
        match vars.iter().find(|(k, _)| *k == name) {
            Some((_, v)) if len > 0 => {
                out.push_str(v);
                rest = &after[len..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Values for the drift check (any will do: it only reads names).
const DRIFT_VARS: [(&str, &str); 9] = [
    ("job", "supervisor"),
    ("namespace", "shop"),
    ("pod", "lamp-1"),
    ("container", "lamp"),
    ("instance", "127.0.0.1:9469"),
    ("program", ".*"),
    ("__rate_interval", "1m"),
    ("__interval", "15s"),
    ("__range", "1h"),
];

/// Everything the dashboard uses that the scrape does not expose.
fn dashboard_problems(d: &Value, exp: &Exposition) -> Vec<String> {
    let mut problems = Vec::new();
    for (place, e) in panel_queries(d) {
        for p in expr_problems(&substitute(&e, &DRIFT_VARS), exp, &DASHBOARD_TARGET_LABELS) {
            problems.push(format!("{place}: {p}"));
        }
    }
    for (name, q) in variable_queries(d) {
        for p in variable_problems(&substitute(&q, &DRIFT_VARS), exp, &DASHBOARD_TARGET_LABELS) {
            problems.push(format!("variable `{name}`: {p}"));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// The rules files, read with a real YAML parser (PyYAML, from the test venv: `cargo xtask venv`).

#[derive(Debug)]
struct Rule {
    /// The alert's (or recording rule's) name.
    name: String,
    /// An alerting rule (else a recording rule).
    alert: bool,
    expr: String,
    /// The values of its labels and annotations (for the `$labels.x` check).
    templates: String,
}

fn parse_rules(yaml: &str) -> Vec<Rule> {
    let docs = yaml_docs(yaml);
    let groups = docs.first().and_then(|d| d["groups"].as_array());
    let mut rules = Vec::new();
    for g in groups.into_iter().flatten() {
        for r in g["rules"].as_array().into_iter().flatten() {
            let alert = r["alert"].is_string();
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap_or("?");
            let mut templates = String::new();
            for key in ["labels", "annotations"] {
                for v in r[key].as_object().into_iter().flat_map(|m| m.values()) {
                    templates.push_str(v.as_str().unwrap_or_default());
                    templates.push('\n');
                }
            }
            rules.push(Rule {
                name: name.to_string(),
                alert,
                expr: r["expr"].as_str().unwrap_or_default().to_string(),
                templates,
            });
        }
    }
    rules
}

/// Everything the rules use that the scrape does not expose, including `$labels.x` in
/// their templates that the alert's series cannot have.
fn rules_problems(yaml: &str, exp: &Exposition) -> Vec<String> {
    let rules = parse_rules(yaml);
    let mut problems = Vec::new();
    if rules.is_empty() {
        problems.push("no rules found".to_string());
    }
    for r in &rules {
        if r.expr.trim().is_empty() {
            problems.push(format!("rule {}: no expr", r.name));
            continue;
        }
        for p in expr_problems(&r.expr, exp, &RULES_TARGET_LABELS) {
            problems.push(format!("rule {}: {p}", r.name));
        }
        let mut available: BTreeSet<String> =
            RULES_TARGET_LABELS.iter().map(|s| s.to_string()).collect();
        if let Ok(refs) = promql::refs(&r.expr) {
            for m in &refs.metrics {
                available.extend(exp.labels_of(m).unwrap_or_default());
            }
        }
        for (at, _) in r.templates.match_indices("$labels.") {
            let rest = &r.templates[at + "$labels.".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let label = &rest[..end];
            if !available.contains(label) {
                problems.push(format!(
                    "rule {}: its template uses $labels.{label}, which its series do not have",
                    r.name
                ));
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Dashboard structure.

/// Grafana's built-in unit ids (packages/grafana-data/src/valueFormats/categories.ts) that fit
/// what the supervisor exports.
const UNITS: [&str; 11] = [
    "none",
    "short",
    "s",
    "ms",
    "dtdurations",
    "bytes",
    "percentunit",
    "cpm",
    "ops",
    "opm",
    "dateTimeFromNow",
];
const PANEL_TYPES: [&str; 5] = ["stat", "timeseries", "state-timeline", "bargauge", "table"];
const ROWS: [&str; 6] = [
    "Overview",
    "Per program",
    "Readiness and health checks",
    "Kills and crashes",
    "Resources",
    "Supervisor",
];

fn datasource_ref() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

/// Every `datasource` value anywhere in `v`, with its path.
fn datasources<'a>(v: &'a Value, path: &str, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{path}.{k}");
                if k == "datasource" {
                    out.push((p.clone(), x));
                }
                datasources(x, &p, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                datasources(x, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// What keeps the dashboard from importing into a current Grafana and working for any
/// datasource, job, instance and program.
fn structure_problems(d: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let ds = datasource_ref();
    match d["schemaVersion"].as_u64() {
        Some(v) if v >= 36 => {}
        other => p.push(format!(
            "schemaVersion {other:?}: want a current schema (>= 36)"
        )),
    }
    if !d["id"].is_null() {
        p.push("`id` must be null (import creates the dashboard)".into());
    }
    if d["uid"].as_str().is_none_or(str::is_empty) || d["title"].as_str().is_none_or(str::is_empty)
    {
        p.push("the dashboard needs a uid and a title".into());
    }
    let text = d.to_string();
    if text.contains("${DS_") || d.get("__inputs").is_some() {
        p.push("datasource import inputs (${DS_...}): use the $datasource variable".into());
    }
    let mut refs = Vec::new();
    datasources(d, "", &mut refs);
    for (path, v) in refs {
        if *v != ds {
            p.push(format!(
                "{path} is {v}: every datasource must be {ds} (no hard-coded uid)"
            ));
        }
    }

    // Variables.
    let vars: BTreeMap<&str, &Value> = d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| Some((v["name"].as_str()?, v)))
        .collect();
    match vars.get("datasource") {
        Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
        _ => p.push("no `datasource` variable of type datasource, query prometheus".into()),
    }
    let queries: BTreeMap<String, String> = variable_queries(d).into_iter().collect();
    for (name, needs) in [
        ("job", &[][..]),
        ("namespace", &["$job"][..]),
        ("pod", &["$job", "$namespace"][..]),
        ("container", &["$job", "$namespace", "$pod"][..]),
        (
            "instance",
            &["$job", "$namespace", "$pod", "$container"][..],
        ),
        (
            "program",
            &["$job", "$namespace", "$pod", "$container", "$instance"][..],
        ),
    ] {
        let Some(v) = vars.get(name) else {
            p.push(format!("no `{name}` variable"));
            continue;
        };
        if v["type"] != "query" || v["datasource"] != ds {
            p.push(format!("variable `{name}` must be a query on {ds}, is {v}"));
        }
        if v["multi"] != true || v["includeAll"] != true {
            p.push(format!(
                "variable `{name}` must allow several values and All"
            ));
        }
        let q = queries.get(name).map(String::as_str).unwrap_or_default();
        if parse_label_values(q).is_none() || !needs.iter().all(|n| q.contains(n)) {
            p.push(format!(
                "variable `{name}`: query `{q}` must be label_values(...) using {needs:?}"
            ));
        }
    }

    // Panels.
    let panels = all_panels(d);
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(String, [i64; 4])> = Vec::new();
    let mut rows: Vec<(i64, String)> = Vec::new();
    let mut probe_panel = false;
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or_default().to_string();
        if !panel["id"].as_u64().is_some_and(|id| ids.insert(id)) {
            p.push(format!("panel `{title}`: missing or duplicate id"));
        }
        let g = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| g[k].as_i64().unwrap_or(-1));
        if x < 0 || y < 0 || w <= 0 || h <= 0 || x + w > 24 {
            p.push(format!("panel `{title}`: bad gridPos {g}"));
        }
        for (other, [ox, oy, ow, oh]) in &boxes {
            if x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h {
                p.push(format!("panel `{title}` overlaps panel `{other}`"));
            }
        }
        boxes.push((title.clone(), [x, y, w, h]));
        if panel["type"] == "row" {
            rows.push((y, title));
            continue;
        }
        if !PANEL_TYPES.contains(&panel["type"].as_str().unwrap_or_default()) {
            p.push(format!("panel `{title}`: type {}", panel["type"]));
        }
        if title.is_empty() || panel["description"].as_str().is_none_or(str::is_empty) {
            p.push(format!("panel `{title}`: needs a title and a description"));
        }
        if panel["datasource"] != ds {
            p.push(format!("panel `{title}`: datasource must be {ds}"));
        }
        let unit = panel["fieldConfig"]["defaults"]["unit"].as_str();
        if !unit.is_some_and(|u| UNITS.contains(&u)) {
            p.push(format!(
                "panel `{title}`: fieldConfig.defaults.unit {unit:?} is not one of {UNITS:?}"
            ));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            p.push(format!("panel `{title}`: no queries"));
        }
        let mut ref_ids = BTreeSet::new();
        for t in &targets {
            if !t["refId"]
                .as_str()
                .is_some_and(|r| ref_ids.insert(r.to_string()))
            {
                p.push(format!("panel `{title}`: missing or duplicate refId"));
            }
            let expr = t["expr"].as_str().unwrap_or_default();
            p.extend(
                expr_variable_problems(expr)
                    .into_iter()
                    .map(|e| format!("panel `{title}`: {e}")),
            );
            if expr.contains("supervisor_probe_loaded") {
                let mappings = panel["fieldConfig"]["defaults"]["mappings"].to_string();
                probe_panel |=
                    mappings.contains("\"0\":{") && mappings.contains("probe not loaded");
            }
        }
    }
    if !probe_panel {
        p.push("no panel maps supervisor_probe_loaded 0 to \"probe not loaded\"".into());
    }
    rows.sort();
    let rows: Vec<&str> = rows.iter().map(|(_, t)| t.as_str()).collect();
    if rows != ROWS {
        p.push(format!("rows are {rows:?}, want {ROWS:?}"));
    }
    p
}

/// A panel query must follow the variables: every selector filters on `$job`, `$namespace`,
/// `$pod`, `$container` and `$instance` (and `$program` for per-program metrics), and every range is `$__rate_interval` or
/// `$__range` (or `$__interval`), never a hard-coded window.
fn expr_variable_problems(expr: &str) -> Vec<String> {
    let mut p = Vec::new();
    if expr.trim().is_empty() {
        return vec!["empty query".into()];
    }
    for (i, _) in expr.match_indices('[') {
        let rest = &expr[i + 1..];
        if !["$__rate_interval]", "$__range]", "$__interval]"]
            .iter()
            .any(|w| rest.starts_with(w))
        {
            p.push(format!(
                "`{expr}`: a range must be [$__rate_interval] or [$__range]"
            ));
        }
    }
    let marked = substitute(
        expr,
        &[
            ("job", "JOB"),
            ("namespace", "NAMESPACE"),
            ("pod", "POD"),
            ("container", "CONTAINER"),
            ("instance", "INSTANCE"),
            ("program", "PROGRAM"),
            ("__rate_interval", "1m"),
            ("__range", "1h"),
            ("__interval", "1m"),
        ],
    );
    let refs = match promql::refs(&marked) {
        Ok(r) => r,
        Err(e) => return vec![e],
    };
    for s in &refs.selectors {
        let Some(m) = &s.metric else { continue };
        let has = |l: &str, v: &str| {
            s.matchers
                .iter()
                .any(|(ml, op, mv)| ml == l && *op == "=~" && mv == v)
        };
        let mut need = vec![
            ("job", "JOB"),
            ("namespace", "NAMESPACE"),
            ("pod", "POD"),
            ("container", "CONTAINER"),
            ("instance", "INSTANCE"),
        ];
        if m.starts_with("supervisor_program_") {
            need.push(("program", "PROGRAM"));
        }
        for (l, v) in need {
            if !has(l, v) {
                p.push(format!("`{expr}`: {m} must be filtered with {l}=~\"${l}\""));
            }
        }
    }
    p
}

// ---------------------------------------------------------------------------------------------
// Unit tests of the checks themselves (no binary): they must pass good input and fail bad.

/// A scrape of the real binary, cut down to one program (and its group) per family.
const SAMPLE_SCRAPE: &str = r#"# HELP supervisor_program_up 1 when the program is RUNNING, else 0.
# TYPE supervisor_program_up gauge
supervisor_program_up{program="web",group="front"} 1
supervisor_program_state{program="web",group="front",state="STOPPED"} 0
supervisor_program_state{program="web",group="front",state="STARTING"} 0
supervisor_program_state{program="web",group="front",state="RUNNING"} 1
supervisor_program_state{program="web",group="front",state="BACKOFF"} 0
supervisor_program_state{program="web",group="front",state="STOPPING"} 0
supervisor_program_state{program="web",group="front",state="EXITED"} 0
supervisor_program_state{program="web",group="front",state="FATAL"} 0
supervisor_program_restarts_total{program="web",group="front"} 3
supervisor_program_exits_total{program="web",group="front",cause="exited"} 3
supervisor_program_exits_total{program="web",group="front",cause="signaled"} 0
supervisor_program_exits_total{program="web",group="front",cause="oom_killed"} 0
supervisor_program_exits_total{program="web",group="front",cause="core_dumped"} 0
supervisor_program_exits_total{program="web",group="front",cause="spawn_failed"} 0
supervisor_program_start_time_seconds{program="web",group="front"} 1795619860.8315194
supervisor_program_uptime_seconds{program="web",group="front"} 0.294349828
supervisor_program_last_exit_code{program="web",group="front"} 1
supervisor_program_last_signal{program="web",group="front"} 0
supervisor_program_resident_memory_bytes{program="web",group="front"} 3272704
supervisor_program_cpu_seconds_total{program="web",group="front"} 0
supervisor_program_processes{program="web",group="front"} 2
supervisor_orphans_reaped_total 0
supervisor_build_info{version="0.1.0",config_hash="5f0e3c1d9a7b2c44"} 1
supervisor_probe_loaded 0
supervisor_program_ready{program="web",group="front"} 1
supervisor_program_health_checks_total{program="web",group="front",result="success"} 4
supervisor_program_health_checks_total{program="web",group="front",result="failure"} 0
supervisor_program_signals_total{program="web",group="front",signal="SIGTERM",sender="assassin",origin="inside"} 2
supervisor_program_signals_total{program="web",group="front",signal="SIGKILL",sender="kill",origin="outside"} 1
supervisor_probe_events_lost_total 0
supervisor_log_events_dropped_total 0
process_cpu_seconds_total 0
process_resident_memory_bytes 4182016
"#;

#[test]
fn drift_check_passes_what_the_supervisor_exports() {
    let exp = Exposition::parse(SAMPLE_SCRAPE);
    assert_eq!(
        exp.metrics["supervisor_program_state"]["state"].len(),
        7,
        "{exp:?}"
    );
    for good in [
        r#"sum by (program) (rate(supervisor_program_restarts_total{job=~"a|b", instance=~".*", program=~".*"}[5m])) * 60"#,
        r#"supervisor_program_state{state="FATAL"} == 1"#,
        r#"supervisor_program_exits_total{cause=~"signaled|oom_killed"} offset 5m"#,
        r#"time() - supervisor_program_start_time_seconds{program!="", group="front"}"#,
        r#"up{job="supervisor"} == 0 or on (job, instance) vector(1)"#,
        r#"topk(10, process_resident_memory_bytes and on (job, instance) supervisor_build_info{version=~"0\\..*"})"#,
        r#"max_over_time(supervisor_program_up[10m:1m]) < bool 1e-3 # a comment"#,
        r#"count by (version) ({__name__="supervisor_build_info"})"#,
        r#"sum(supervisor_program_up) without (group) / ignoring (group) group_left sum(supervisor_program_processes)"#,
    ] {
        let problems = expr_problems(good, &exp, &DASHBOARD_TARGET_LABELS);
        assert!(problems.is_empty(), "{good}: {problems:#?}");
    }
    assert!(variable_problems(
        r#"label_values(supervisor_program_up{job=~"$job"}, program)"#
            .replace("$job", "x")
            .as_str(),
        &exp,
        &DASHBOARD_TARGET_LABELS
    )
    .is_empty());
}

#[test]
fn drift_check_rejects_what_the_supervisor_does_not_export() {
    let exp = Exposition::parse(SAMPLE_SCRAPE);
    for (bad, culprit) in [
        // A misspelt metric name.
        (
            "rate(supervisor_program_restart_total[5m])",
            "supervisor_program_restart_total",
        ),
        // A metric that does not exist (yet): the eBPF probe's.
        (
            r#"sum by (sender) (increase(supervisor_signals_received_total[1h]))"#,
            "supervisor_signals_received_total",
        ),
        // A label a metric does not have, in a selector.
        (r#"supervisor_program_up{cause="exited"}"#, "cause"),
        (r#"supervisor_build_info{program="web"}"#, "program"),
        // ... in a by/on clause.
        ("sum by (node) (supervisor_program_up)", "node"),
        (
            "supervisor_program_up * on (host) supervisor_program_processes",
            "host",
        ),
        // A value an enumerated label never takes.
        (r#"supervisor_program_state{state="FATL"}"#, "FATL"),
        (
            r#"supervisor_program_exits_total{cause=~"signaled|oom"}"#,
            "oom",
        ),
        // Syntax the check cannot read.
        (r#"supervisor_program_up{program="web"#, "unterminated"),
        (
            r#"supervisor_program_up{program=~"$program"}"#,
            "Grafana variable",
        ),
    ] {
        let problems = expr_problems(bad, &exp, &DASHBOARD_TARGET_LABELS);
        assert!(
            problems.iter().any(|p| p.contains(culprit)),
            "`{bad}` should be rejected for `{culprit}`, got {problems:#?}"
        );
    }
    // A target label that only the rules may use.
    assert!(!expr_problems(
        r#"supervisor_probe_loaded{probe_expected="true"}"#,
        &exp,
        &DASHBOARD_TARGET_LABELS
    )
    .is_empty());
    assert!(expr_problems(
        r#"supervisor_probe_loaded{probe_expected="true"}"#,
        &exp,
        &RULES_TARGET_LABELS
    )
    .is_empty());

    // The same through a whole dashboard: one bad panel, one bad variable.
    let mut d = dashboard();
    assert!(
        dashboard_problems(&d, &exp).is_empty(),
        "{:#?}",
        dashboard_problems(&d, &exp)
    );
    d["panels"][1]["targets"][0]["expr"] =
        json!(r#"sum(supervisor_programs_up{job=~"$job", instance=~"$instance"})"#);
    for v in d["templating"]["list"].as_array_mut().unwrap() {
        if v["name"] == "program" {
            v["query"] = json!(r#"label_values(supervisor_program_up{job=~"$job"}, programme)"#);
        }
    }
    let problems = dashboard_problems(&d, &exp);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("supervisor_programs_up"))
            && problems.iter().any(|p| p.contains("programme")),
        "{problems:#?}"
    );

    // And through a rules file: a bad expr, a template label the series lack.
    let rules = "groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: |\n          \
                 increase(supervisor_program_restarts_total[10m])\n            > on (job, instance, node) 3\n        \
                 annotations:\n          summary: '{{ $labels.program }}'\n      - alert: B\n        \
                 expr: supervisor_probe_loaded == 0 # comment\n        annotations:\n          \
                 summary: \"{{ $labels.program }} on {{ $labels.instance }}\"\n";
    let parsed = parse_rules(rules);
    assert_eq!(parsed.len(), 2, "{parsed:#?}");
    assert_eq!(parsed[1].expr, "supervisor_probe_loaded == 0");
    let problems = rules_problems(rules, &exp);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("rule A") && p.contains("node"))
            && problems
                .iter()
                .any(|p| p.contains("rule B") && p.contains("$labels.program")),
        "{problems:#?}"
    );
    assert!(
        !problems.iter().any(|p| p.contains("$labels.instance")),
        "{problems:#?}"
    );
}

#[test]
fn the_dashboard_is_importable_and_follows_its_variables() {
    let d = dashboard();
    let problems = structure_problems(&d);
    assert!(problems.is_empty(), "{problems:#?}");
    // Not vacuous: the drift check sees most of what the supervisor exports.
    let names: BTreeSet<String> = panel_queries(&d)
        .iter()
        .flat_map(|(_, e)| promql::refs(&substitute(e, &DRIFT_VARS)).unwrap().metrics)
        .collect();
    assert!(names.len() >= 15, "{names:?}");
}

fn grafana_schema() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/schemas/grafana-dashboard.jsonschema.json")
}

#[test]
fn the_dashboard_is_valid_against_grafanas_schema() {
    // Grafana's published dashboard schema (grafana-foundation-sdk; tests/fixtures/schemas/),
    // as is: no normalisation is needed.
    let errors = schema_errors(&grafana_schema(), &dashboard(), false);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn grafanas_schema_rejects_what_grafana_exports_but_the_schema_does_not_allow() {
    // The three kinds of error an exported dashboard had: the export-only `__requires`, a
    // variable's `current: {}` (no text/value), and the query editor's `qryType` object.
    let mut d = dashboard();
    d["__requires"] =
        json!([{"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.4.0"}]);
    let vars = d["templating"]["list"].as_array_mut().unwrap();
    vars[1]["current"] = json!({});
    vars[2]["query"] = json!({"qryType": 1, "query": "label_values(up, job)", "refId": "A"});
    let errors = schema_errors(&grafana_schema(), &d, false).join("\n");
    for want in [
        "'__requires' was unexpected",
        "templating/list/1/current : 'text' is a required property",
        "templating/list/1/current : 'value' is a required property",
        "templating/list/2/query",
    ] {
        assert!(errors.contains(want), "want {want:?} in:\n{errors}");
    }
}

#[test]
fn the_structure_check_rejects_a_broken_dashboard() {
    let mut d = dashboard();
    d["schemaVersion"] = json!(16);
    d["panels"][1]["datasource"] = json!({"type": "prometheus", "uid": "P1809F7CD0C75ACF3"});
    d["panels"][2]["fieldConfig"]["defaults"]
        .as_object_mut()
        .unwrap()
        .remove("unit");
    d["panels"][3]["targets"][0]["expr"] =
        json!(r#"sum(supervisor_program_state{job=~"$job", state="FATAL"})"#);
    d["panels"][4]["targets"][0]["expr"] = json!(
        r#"sum(increase(supervisor_program_restarts_total{job=~"$job", instance=~"$instance", program=~"$program"}[5m]))"#
    );
    d["templating"]["list"]
        .as_array_mut()
        .unwrap()
        .retain(|v| v["name"] != "instance");
    let problems = structure_problems(&d).join("\n");
    for want in [
        "schemaVersion",
        "P1809F7CD0C75ACF3",
        "unit None",
        "filtered with instance",
        "filtered with program",
        "[$__rate_interval]",
        "no `instance` variable",
    ] {
        assert!(problems.contains(want), "want {want:?} in:\n{problems}");
    }
}

#[test]
fn grafana_variables_are_substituted() {
    let vars = [("job", "sup"), ("__range", "1h"), ("__rate_interval", "4m")];
    assert_eq!(
        substitute(
            r#"increase(x{job=~"$job", a="${job}", b="${job:regex}"}[$__range]) + rate(y[$__rate_interval]) $unknown"#,
            &vars
        ),
        r#"increase(x{job=~"sup", a="sup", b="sup"}[1h]) + rate(y[4m]) $unknown"#
    );
}

// ---------------------------------------------------------------------------------------------
// With the real binary, promtool and Prometheus.

/// Programs that crash on purpose: one exits 1 every 0.3 s, one kills itself with SIGKILL
/// every 0.5 s, and one is healthy (in a group, so the `group` label is exported too).
const CONFIG: &str = r#"
[programs.crashy]
command = "sh -c 'sleep 0.3; exit 1'"
startsecs = 0
autorestart = true

[programs.killed]
command = ["sh", "-c", "sleep 0.5; kill -KILL $$"]
startsecs = 0
autorestart = true

[programs.healthy]
command = "sleep 1000"
startsecs = 1
group = "steady"
health = "exec:true"
health_interval = 1
"#;

/// For a second supervisor, with the eBPF probe: `assassin` (a copy of kill(1) under a name of
/// its own) sends `victim` SIGTERM every half second, so the probe's signal metrics have series
/// from a sender that is neither the supervisor nor the kernel; `target` is sent SIGTERM once by
/// `kill` run from the host (outside the supervisor's PID namespace), for `origin="outside"`.
/// DIR is the test's directory.
const PROBED_CONFIG: &str = r#"
[programs.target]
command = ["sh", "-c", "echo $$ > DIR/target.pid; exec sleep 1000"]
startsecs = 0
autorestart = true

[programs.victim]
command = ["sh", "-c", "echo $$ > DIR/victim.pid; exec sleep 1000"]
startsecs = 0
autorestart = true

[programs.assassin]
command = ["sh", "-c", "sleep 0.5; DIR/assassin -TERM $(cat DIR/victim.pid)"]
startsecs = 0
autorestart = true
"#;

/// Starts the supervisor on [`CONFIG`] with its HTTP endpoint on a free loopback port and the
/// eBPF probe off (so `supervisor_probe_loaded` is 0 whatever the privileges).
fn start_supervisor(dir: &TempDir, mode: Mode) -> (Sup, String) {
    let conf = dir.write("supervisor.toml", CONFIG);
    let addr = format!("127.0.0.1:{}", free_port());
    let sup = Sup::start(
        mode,
        dir.path(),
        &[
            "run",
            "-c",
            conf.to_str().unwrap(),
            "--metrics-addr",
            &addr,
            "--probe",
            "off",
        ],
    );
    sup.wait_event("the HTTP endpoint", T, |e| {
        kind(e) == "notice" && msg(e).starts_with("HTTP endpoint listening")
    });
    (sup, addr)
}

/// Starts a supervisor as PID 1 on [`PROBED_CONFIG`] with `--probe on` (so it fails, saying
/// why, where the eBPF probe cannot load), its HTTP endpoint on a free loopback port.
fn start_probed_supervisor(dir: &TempDir) -> (Sup, String) {
    std::fs::copy("/bin/kill", dir.path().join("assassin")).expect("copy /bin/kill");
    let config = PROBED_CONFIG.replace("DIR", dir.path().to_str().expect("utf-8 path"));
    let conf = dir.write("probed.toml", &config);
    let addr = format!("127.0.0.1:{}", free_port());
    let args = [
        "run",
        "-c",
        conf.to_str().unwrap(),
        "--metrics-addr",
        &addr,
        "--probe",
        "on",
    ];
    let sup = Sup::start(Mode::Pid1, dir.path(), &args);
    sup.wait_event("the eBPF probe", T, |e| {
        msg(e).starts_with("eBPF probe loaded")
    });
    sup.wait_event("the HTTP endpoint", T, |e| {
        kind(e) == "notice" && msg(e).starts_with("HTTP endpoint listening")
    });
    // Once: `kill` from the host, outside the supervisor's PID namespace.
    let target = sup.wait_event("target running", T, |e| is(e, "running", "target"));
    let host_pid = sup.to_host_pid(pid(&target));
    let status = std::process::Command::new("/bin/kill")
        .args(["-TERM", &host_pid.to_string()])
        .status()
        .expect("run kill");
    assert!(
        status.success(),
        "kill -TERM {host_pid} from the host failed"
    );
    (sup, addr)
}

/// A scrape of the probed supervisor once the probe has counted a signal from `assassin` and
/// the one from the host.
fn scrape_signals(addr: &str) -> String {
    let deadline = Instant::now() + T;
    loop {
        let body = http_get(addr, "/metrics").body;
        if body.contains(r#"supervisor_program_signals_total{program="victim",signal="SIGTERM",sender="assassin",origin="inside"}"#)
            && body.contains(r#"supervisor_program_signals_total{program="target",signal="SIGTERM",sender="kill",origin="outside"}"#)
        {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "no signal from assassin in:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A scrape with every program present.
fn scrape(addr: &str) -> String {
    let deadline = Instant::now() + T;
    loop {
        let body = http_get(addr, "/metrics").body;
        if ["crashy", "killed", "healthy"]
            .iter()
            .all(|p| body.contains(&format!("supervisor_program_up{{program=\"{p}\"")))
        {
            return body;
        }
        assert!(Instant::now() < deadline, "programs missing from:\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dashboard_and_rules_use_only_what_the_real_binary_exports() {
    let dir = TempDir::new("dash-drift");
    let (_sup, addr) = start_supervisor(&dir, Mode::Child);
    // The probe's metrics have series only with the probe, from a second supervisor.
    let probed_dir = TempDir::new("dash-drift-probed");
    let (_probed, probed) = start_probed_supervisor(&probed_dir);
    let exp = Exposition::parse(&format!("{}{}", scrape(&addr), scrape_signals(&probed)));
    let mut problems = dashboard_problems(&dashboard(), &exp);
    problems.extend(rules_problems(&read("alerts.yml"), &exp));
    problems.extend(rules_problems(&read("recording.yml"), &exp));
    assert!(
        problems.is_empty(),
        "the dashboards drifted from the metrics:\n{}",
        problems.join("\n")
    );

    // Federation-ready: every label the supervisor puts on its series is one of a few names
    // with bounded values (no pid, no free text), so series stay bounded across a fleet.
    for (metric, labels) in &exp.metrics {
        if !metric.starts_with("supervisor_") {
            continue;
        }
        for (label, values) in labels {
            assert!(
                BOUNDED_LABELS.contains(&label.as_str()),
                "{metric} has a label `{label}` outside {BOUNDED_LABELS:?}: {values:?}"
            );
            for v in values {
                assert!(
                    // A config hash is hex: digits only by chance, and still one per config.
                    !v.is_empty()
                        && (label == "config_hash" || !v.chars().all(|c| c.is_ascii_digit()))
                        && !v.contains(' '),
                    "{metric}{{{label}=\"{v}\"}}: a number or free text as a label value"
                );
            }
        }
    }
}

/// The labels of the `supervisor_*` series: program and group names (from the config), the
/// fixed sets state, cause and result, the signal name, the sender (a command name, at most 16
/// per program, the rest `other`) and the version.
const BOUNDED_LABELS: [&str; 10] = [
    "program",
    "group",
    "state",
    "cause",
    "result",
    "signal",
    "sender",
    "origin",
    "version",
    "config_hash",
];

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("/usr/bin/promtool")
        .args(args)
        .current_dir(dashboards_dir())
        .output()
        .expect("run promtool (Debian's prometheus package; `cargo xtask deps` installs it)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn promtool_checks_the_rules_and_their_tests_cover_every_alert() {
    let (ok, out) = promtool(&["check", "rules", "alerts.yml"]);
    assert!(
        ok && out.contains("SUCCESS"),
        "promtool check rules:\n{out}"
    );
    let (ok, out) = promtool(&["test", "rules", "tests/alerts_test.yml"]);
    assert!(ok, "promtool test rules:\n{out}");

    // Every alert has a case where it fires and one where it does not.
    let tests = yaml_docs(&read("tests/alerts_test.yml")).remove(0);
    let mut firing = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for case in tests["tests"].as_array().into_iter().flatten() {
        for t in case["alert_rule_test"].as_array().into_iter().flatten() {
            let name = t["alertname"].as_str().unwrap_or_default().to_string();
            match t["exp_alerts"].as_array() {
                Some(a) if a.is_empty() => silent.insert(name),
                Some(_) => firing.insert(name),
                None => false,
            };
        }
    }
    let alerts: Vec<String> = parse_rules(&read("alerts.yml"))
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(alerts.len(), 8, "{alerts:?}");
    for a in &alerts {
        assert!(firing.contains(a), "no promtool test where {a} fires");
        assert!(
            silent.contains(a),
            "no promtool test where {a} does not fire"
        );
    }

    // The recording rules: valid, and each one's output checked by a promtool test.
    let (ok, out) = promtool(&["check", "rules", "recording.yml"]);
    assert!(
        ok && out.contains("SUCCESS"),
        "promtool check rules:\n{out}"
    );
    let (ok, out) = promtool(&["test", "rules", "tests/recording_test.yml"]);
    assert!(ok, "promtool test rules:\n{out}");
    let tests = yaml_docs(&read("tests/recording_test.yml")).remove(0);
    let tested: BTreeSet<String> = tests["tests"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| {
            c["promql_expr_test"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|t| t["exp_samples"].as_array().is_some_and(|s| !s.is_empty()))
        .map(|t| t["expr"].as_str().unwrap_or_default().to_string())
        .collect();
    let records = parse_rules(&read("recording.yml"));
    assert!(records.len() >= 5 && records.iter().all(|r| !r.alert));
    for r in &records {
        assert!(tested.contains(&r.name), "no promtool test of {}", r.name);
    }
}

/// A real Prometheus server, killed (by its pid) when dropped.
struct Prometheus {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Prometheus {
    fn start(dir: &Path, config: &str) -> Prometheus {
        let addr = format!("127.0.0.1:{}", free_port());
        let conf = dir.join("prometheus.yml");
        std::fs::write(&conf, config).expect("write prometheus.yml");
        let child = Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-lifecycle")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("prometheus.out")).expect("log file"))
            .stderr(std::fs::File::create(dir.join("prometheus.err")).expect("log file"))
            .spawn()
            .expect(
                "start prometheus (Debian's prometheus package; `cargo xtask deps` installs it)",
            );
        let p = Prometheus {
            child,
            addr,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + T;
        while http_raw(
            &p.addr,
            format!("GET /-/ready HTTP/1.0\r\nHost: {}\r\n\r\n", p.addr).as_bytes(),
        )
        .map(|r| r.status)
            != Some(200)
        {
            assert!(
                Instant::now() < deadline,
                "Prometheus is not ready:\n{}",
                p.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    fn logs(&self) -> String {
        let err = std::fs::read_to_string(self.dir.join("prometheus.err")).unwrap_or_default();
        tail(&err, 30)
    }

    /// GET an API path; its `data`, or the error Prometheus gave.
    fn api(&self, path: &str) -> Result<Value, String> {
        let r = http_get(&self.addr, path);
        let v: Value = serde_json::from_str(&r.body)
            .map_err(|e| format!("{path}: not JSON ({e}): {}", r.body))?;
        if v["status"] != "success" {
            return Err(format!("{path}: {}", r.body));
        }
        Ok(v["data"].clone())
    }

    /// An instant query's result vector.
    fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(promql)))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    fn alerts(&self) -> Vec<Value> {
        self.api("/api/v1/alerts").unwrap_or_else(|e| panic!("{e}"))["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of the child this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The rules with every `for:` shortened to 2 s and every group `interval:` to 1 s, so that
/// alerts go pending and then firing within the test's seconds instead of minutes (the parsed file, written back as JSON — which
/// is YAML —; the expressions and thresholds are untouched).
fn rules_with_short_for(yaml: &str) -> String {
    let mut doc = yaml_docs(yaml).remove(0);
    for g in doc["groups"].as_array_mut().expect("groups") {
        if g.get("interval").is_some() {
            g["interval"] = json!("1s");
        }
        for r in g["rules"].as_array_mut().expect("rules") {
            if r.get("for").is_some() {
                r["for"] = json!("2s");
            }
        }
    }
    doc.to_string()
}

fn label<'a>(a: &'a Value, name: &str) -> &'a str {
    a["labels"][name].as_str().unwrap_or("")
}

#[test]
fn prometheus_runs_every_dashboard_query_and_the_alerts_on_real_data() {
    let started = Instant::now();
    let dir = TempDir::new("dash-prom");
    let (sup, addr) = start_supervisor(&dir, Mode::Pid1);
    let probed_dir = TempDir::new("dash-prom-probed");
    let (probed_sup, probed) = start_probed_supervisor(&probed_dir);
    // healthy is STARTING (up 0) for its first second: let that pass before anyone looks.
    sup.wait_event("healthy RUNNING", T, |e| is(e, "running", "healthy"));

    let mut rule_files = Vec::new();
    let mut names = BTreeSet::new();
    for file in ["alerts.yml", "recording.yml"] {
        let shipped = read(file);
        let rules = parse_rules(&shipped);
        let short = rules_with_short_for(&shipped);
        assert_eq!(
            short.matches(r#""for":"2s""#).count(),
            rules.iter().filter(|r| r.alert).count(),
            "every alert in {file} has a `for:` to shorten"
        );
        names.extend(rules.into_iter().map(|r| r.name));
        rule_files.push(format!("  - {}\n", dir.write(file, &short).display()));
    }
    // A third target that never answers (a listener nobody accepts on, held for the whole
    // test so no one else can take the port): SupervisorTargetDown must fire for it. Every
    // target says the probe is expected there, so SupervisorProbeNotLoaded fires for the
    // supervisor that runs with --probe off, and not for the probed one. The targets carry
    // the labels a Kubernetes scrape gives them (namespace, pod, container).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let dead = silent.local_addr().expect("local addr").to_string();
    let target = |addr: &str, pod: &str| {
        format!(
            "      - targets: ['{addr}']\n        labels:\n          probe_expected: 'true'\n          \
             namespace: fleet\n          pod: {pod}\n          container: app\n"
        )
    };
    let prom = Prometheus::start(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n{}\
             scrape_configs:\n  - job_name: supervisor\n    static_configs:\n{}{}{}",
            rule_files.concat(),
            target(&addr, "pod-a"),
            target(&probed, "pod-b"),
            target(&dead, "pod-dead"),
        ),
    );

    // Prometheus loaded what PyYAML reads.
    let parsed = names;
    let deadline = Instant::now() + T;
    loop {
        let loaded: BTreeSet<String> = prom.api("/api/v1/rules").unwrap()["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .map(|r| r["name"].as_str().unwrap_or_default().to_string())
            .collect();
        if loaded == parsed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus loaded {loaded:?}, the file has {parsed:?}\n{}",
            prom.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The alerts: crash loop for crashy (and killed), never anything for healthy.
    let expected = [
        ("SupervisorProgramCrashLooping", "program", "crashy"),
        ("SupervisorTargetDown", "instance", dead.as_str()),
        ("SupervisorProbeNotLoaded", "instance", addr.as_str()),
        ("SupervisorProgramKilledByOthers", "program", "victim"),
    ];
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let alerts = prom.alerts();
        let about_healthy: Vec<&Value> = alerts
            .iter()
            .filter(|a| label(a, "program") == "healthy")
            .collect();
        assert!(
            about_healthy.is_empty(),
            "alerts for the healthy program: {about_healthy:#?}"
        );
        let missing: Vec<_> = expected
            .iter()
            .filter(|(name, key, value)| {
                !alerts.iter().any(|a| {
                    label(a, "alertname") == *name
                        && label(a, key) == *value
                        && a["state"] == "firing"
                })
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not firing: {missing:?}\nalerts: {alerts:#?}\n{}",
            prom.logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let alerts = prom.alerts();
    assert!(
        !alerts.iter().any(
            |a| label(a, "alertname") == "SupervisorTargetDown" && label(a, "instance") == addr
        ),
        "{alerts:#?}"
    );
    assert!(
        !alerts
            .iter()
            .any(|a| label(a, "alertname") == "SupervisorProbeNotLoaded"
                && label(a, "instance") == probed),
        "{alerts:#?}"
    );
    for g in prom.api("/api/v1/rules").unwrap()["groups"]
        .as_array()
        .unwrap()
    {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(r["health"], "ok", "rule failed to evaluate: {r:#}");
        }
    }

    // Every dashboard query, with the variables as Grafana would substitute them (All, then a
    // single program), returns at least one series.
    let d = dashboard();
    let live = format!(
        "{}|{}",
        addr.replace('.', "\\\\."),
        probed.replace('.', "\\\\.")
    );
    let deadline = Instant::now() + T;
    // All programs, then two (a multi-value selection, as Grafana writes it).
    for program in [".*", "crashy|victim"] {
        let vars = [
            ("job", "supervisor"),
            ("namespace", "fleet"),
            ("pod", "pod-a|pod-b"),
            ("container", "app"),
            ("instance", live.as_str()),
            ("program", program),
            ("__rate_interval", "5s"),
            ("__interval", "1s"),
            ("__range", "5m"),
        ];
        for (place, e) in panel_queries(&d) {
            let q = substitute(&e, &vars);
            loop {
                match prom.query(&q) {
                    Ok(r) if !r.is_empty() => break,
                    Ok(_) => assert!(
                        Instant::now() < deadline,
                        "{place}: no series for\n{q}\n{}",
                        prom.logs()
                    ),
                    Err(e) => panic!("{place}: Prometheus rejected\n{q}\n{e}"),
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        for (name, query) in variable_queries(&d) {
            let (selector, label_name) =
                parse_label_values(&substitute(&query, &vars)).expect("label_values");
            let selector = selector.expect("variable queries have a selector");
            let data = prom
                .api(&format!("/api/v1/series?match[]={}", url_encode(&selector)))
                .unwrap_or_else(|e| panic!("variable {name}: {e}"));
            assert!(
                data.as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s[&label_name].is_string()),
                "variable {name}: no `{label_name}` values from {selector}: {data}"
            );
        }
    }

    // And a few panels say the right thing about these programs.
    let panel_value = |title: &str, program: &str, ref_id: &str, want: &dyn Fn(&Value) -> bool| {
        let p = all_panels(&d)
            .into_iter()
            .find(|p| p["title"] == title)
            .unwrap_or_else(|| panic!("no panel {title}"));
        let t = p["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["refId"] == ref_id)
            .unwrap();
        let vars = [
            ("job", "supervisor"),
            ("namespace", "fleet"),
            ("pod", "pod-a|pod-b"),
            ("container", "app"),
            ("instance", live.as_str()),
            ("program", program),
            ("__rate_interval", "5s"),
            ("__interval", "1s"),
            ("__range", "5m"),
        ];
        let q = substitute(t["expr"].as_str().unwrap(), &vars);
        let r = prom.query(&q).unwrap();
        assert!(r.iter().any(want), "{title} for {program}: {r:#?}\n{q}");
    };
    let num = |s: &Value| {
        s["value"][1]
            .as_str()
            .unwrap_or("nan")
            .parse::<f64>()
            .unwrap()
    };
    panel_value("Restarts in range", "crashy", "A", &|s| num(s) > 0.0);
    panel_value("Restarts in range", "healthy", "A", &|s| num(s) == 0.0);
    panel_value("Programs up", "healthy", "A", &|s| num(s) == 1.0);
    panel_value("FATAL programs", ".*", "A", &|s| num(s) == 0.0);
    panel_value("eBPF probe", ".*", "A", &|s| num(s) == 0.0);
    panel_value("Last exit per program", "killed", "B", &|s| {
        s["metric"]["program"] == "killed" && num(s) == 9.0
    });
    panel_value("Last exit per program", "crashy", "A", &|s| num(s) == 1.0);
    panel_value("Kills and crashes per minute", "killed", "A", &|s| {
        s["metric"]["cause"] == "signaled" && num(s) > 0.0
    });
    panel_value("Exits per minute by cause", "crashy", "A", &|s| {
        s["metric"]["cause"] == "exited" && num(s) > 0.0
    });

    panel_value("Ready by program", "healthy", "A", &|s| num(s) == 1.0);
    panel_value("Health checks per minute by result", "healthy", "A", &|s| {
        s["metric"]["result"] == "success" && num(s) > 0.0
    });
    panel_value(
        "Signals by program and sender in range (top 10)",
        "victim",
        "A",
        &|s| {
            s["metric"]["sender"] == "assassin"
                && s["metric"]["signal"] == "SIGTERM"
                && num(s) > 0.0
        },
    );
    panel_value("Signals from other processes in range", ".*", "A", &|s| {
        num(s) > 0.0
    });

    drop(prom);
    drop(silent);
    drop(sup);
    drop(probed_sup);
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "took {:?}",
        started.elapsed()
    );
}
