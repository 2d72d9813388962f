//! Issue 18: the Kubernetes kit in examples/kubernetes/, checked offline with real tools:
//!
//! - every manifest with `kubernetes-validate --strict` (PyPI; it ships the Kubernetes
//!   schemas), and a typo in a field name (`livenesProbe`) fails it;
//! - the prometheus-operator objects (PodMonitor, PrometheusRule) against the CRDs' OpenAPI
//!   schemas kept in tests/fixtures/schemas/, closed as strict field validation closes them;
//! - the PrometheusRule is exactly what `cargo xtask k8s` makes from dashboards/*.yml, and
//!   `promtool check rules` / `promtool test rules` pass on what it carries;
//! - the supervisord config in the ConfigMap passes `supervisor check`, and the pieces agree
//!   with each other (ports, probe paths, grace period above the shutdown budget, selectors);
//! - the prometheus.io/* relabelling, run by a real Prometheus on discovered-pod labels, makes
//!   one target per annotated pod (however many ports it declares), drops pods without the
//!   annotation, and scrapes a real supervisor at the annotated port and path.
//!
//! A missing tool fails the test and says how to get it (`cargo xtask venv`, or
//! `cargo xtask test`, which installs everything). Loopback only; every process started here is
//! killed by its pid.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::*;
use serde_json::{json, Value};

// The generator itself (std only), so the check runs what `cargo xtask k8s` runs.
#[path = "../../xtask/src/k8s_rules.rs"]
mod k8s_rules;

const T: Duration = Duration::from_secs(20);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn kit() -> PathBuf {
    root().join("examples/kubernetes")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The Kubernetes manifests of the kit (`*.yaml`; the `.yml` file is a Prometheus config).
fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(kit())
        .expect("examples/kubernetes")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "manifests missing: {files:?}");
    files
}

/// Every object of every manifest: (file name, object).
fn objects() -> Vec<(String, Value)> {
    manifests()
        .iter()
        .flat_map(|f| {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            yaml_docs(&read(f))
                .into_iter()
                .map(move |o| (name.clone(), o))
        })
        .collect()
}

fn object(kind: &str, name: &str) -> Value {
    objects()
        .into_iter()
        .map(|(_, o)| o)
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in examples/kubernetes"))
}

/// The API groups whose objects kubernetes-validate has no schema for: the CRD schemas here.
const CRDS: [(&str, &str); 2] = [
    ("PodMonitor", "podmonitor-monitoring.coreos.com-v1.json"),
    (
        "PrometheusRule",
        "prometheusrule-monitoring.coreos.com-v1.json",
    ),
];

fn crd_schema(kind: &str) -> PathBuf {
    let file = CRDS
        .iter()
        .find(|(k, _)| *k == kind)
        .unwrap_or_else(|| panic!("no CRD schema for {kind}"))
        .1;
    root().join("tests/fixtures/schemas").join(file)
}

/// `kubernetes-validate --strict FILES`: (exit status, output).
fn kubernetes_validate(files: &[PathBuf]) -> (i32, String) {
    let out = Command::new(venv_tool("kubernetes-validate"))
        .arg("--strict")
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn every_manifest_passes_kubernetes_validate_in_strict_mode() {
    let files = manifests();
    let (code, out) = kubernetes_validate(&files);
    assert_eq!(code, 0, "kubernetes-validate --strict:\n{out}");
    for (file, o) in objects() {
        let kind = o["kind"].as_str().expect("kind");
        let name = o["metadata"]["name"].as_str().expect("metadata.name");
        if CRDS.iter().any(|(k, _)| *k == kind) {
            // No schema in kubernetes-validate: checked against the CRD's below.
            assert!(
                out.contains(&format!("WARN {}", kit().join(&file).display())),
                "{out}"
            );
            continue;
        }
        let passed = format!("passed for resource {}/{name}", kind.to_lowercase());
        assert!(
            out.lines()
                .any(|l| l.starts_with("INFO") && l.contains(&passed)),
            "{file}: {kind} {name} was not validated:\n{out}"
        );
    }
    let unexpected: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("WARN") && !CRDS.iter().any(|(k, _)| l.contains(k)))
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
}

#[test]
fn prometheus_operator_objects_match_the_crd_schemas() {
    let mut seen = BTreeSet::new();
    for (file, o) in objects() {
        let kind = o["kind"].as_str().unwrap_or_default();
        if !CRDS.iter().any(|(k, _)| *k == kind) {
            continue;
        }
        assert_eq!(o["apiVersion"], "monitoring.coreos.com/v1", "{file}");
        let errors = schema_errors(&crd_schema(kind), &o, true);
        assert!(errors.is_empty(), "{file}: {kind}:\n{}", errors.join("\n"));
        seen.insert(kind.to_string());
    }
    assert_eq!(seen.len(), CRDS.len(), "CRD objects found: {seen:?}");
}

#[test]
fn a_typo_fails_validation() {
    let dir = TempDir::new("k8s-typo");
    // A core object: kubernetes-validate --strict rejects the unknown field.
    let deployment = read(&kit().join("deployment.yaml"));
    assert!(deployment.contains("livenessProbe:"));
    let bad = dir.write(
        "deployment.yaml",
        &deployment.replace("livenessProbe:", "livenesProbe:"),
    );
    let (code, out) = kubernetes_validate(&[bad]);
    assert_ne!(code, 0, "a typo passed:\n{out}");
    assert!(out.contains("livenesProbe"), "{out}");

    // The CRD objects: the closed schema rejects unknown fields at any depth, and a missing
    // required one.
    let podmonitor = object("PodMonitor", "lamp-supervisor");
    let mut bad = podmonitor.clone();
    bad["spec"]["podMetricsEndpoint"] = bad["spec"]["podMetricsEndpoints"].take();
    bad["spec"]
        .as_object_mut()
        .unwrap()
        .remove("podMetricsEndpoints");
    let errors = schema_errors(&crd_schema("PodMonitor"), &bad, true);
    assert!(
        errors.iter().any(|e| e.contains("podMetricsEndpoint")),
        "{errors:?}"
    );
    let mut bad = podmonitor;
    bad["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["targetLable"] = json!("x");
    let errors = schema_errors(&crd_schema("PodMonitor"), &bad, true);
    assert!(
        errors.iter().any(|e| e.contains("targetLable")),
        "{errors:?}"
    );

    let mut bad = object("PrometheusRule", "supervisor");
    let rule = &mut bad["spec"]["groups"][0]["rules"][0];
    rule["exp"] = rule["expr"].take();
    rule.as_object_mut().unwrap().remove("expr");
    let errors = schema_errors(&crd_schema("PrometheusRule"), &bad, true);
    assert!(
        errors.iter().any(|e| e.contains("'expr' is a required")),
        "{errors:?}"
    );
}

fn rule_sources() -> Vec<(&'static str, String)> {
    k8s_rules::SOURCES
        .iter()
        .map(|p| (*p, read(&root().join(p))))
        .collect()
}

#[test]
fn the_prometheusrule_is_what_cargo_xtask_k8s_makes() {
    let sources = rule_sources();
    let refs: Vec<(&str, &str)> = sources.iter().map(|(p, t)| (*p, t.as_str())).collect();
    let made = k8s_rules::prometheus_rule(&refs).unwrap_or_else(|e| panic!("{e}"));
    let committed = read(&root().join(k8s_rules::OUTPUT));
    assert!(
        committed == made,
        "{} is not what dashboards/alerts.yml and dashboards/recording.yml make: run \
         `cargo xtask k8s` and commit the result",
        k8s_rules::OUTPUT
    );
    // And a YAML parser reads the same groups from both (the indentation kept their meaning).
    let mut groups = Vec::new();
    for (path, text) in &sources {
        let doc = yaml_docs(text);
        groups.extend(
            doc[0]["groups"]
                .as_array()
                .unwrap_or_else(|| panic!("{path}: no groups"))
                .clone(),
        );
    }
    let rule = object("PrometheusRule", "supervisor");
    assert_eq!(rule["spec"]["groups"], Value::Array(groups));
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new("/usr/bin/promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect(
            "run /usr/bin/promtool (Debian's prometheus package; `cargo xtask test` installs it)",
        );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn promtool_checks_and_tests_the_rules_the_prometheusrule_carries() {
    let dir = TempDir::new("k8s-promtool");
    let rule = object("PrometheusRule", "supervisor");
    // The spec is a rule file (`groups: [...]`); JSON is YAML.
    let rules = dir.write("rules.yml", &rule["spec"].to_string());
    let out = promtool(&["check", "rules", rules.to_str().unwrap()], dir.path());
    let count: usize = rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["rules"].as_array().unwrap().len())
        .sum();
    assert!(
        out.contains(&format!("SUCCESS: {count} rules found")),
        "{out}"
    );
    // The unit tests of dashboards/tests/, run on the extracted rules instead of the sources.
    for test in ["alerts_test.yml", "recording_test.yml"] {
        let text = read(&root().join("dashboards/tests").join(test));
        let from = if test.starts_with("alerts") {
            "../alerts.yml"
        } else {
            "../recording.yml"
        };
        assert!(text.contains(from), "{test} loads {from}");
        let path = dir.write(test, &text.replace(from, "rules.yml"));
        let out = promtool(&["test", "rules", path.to_str().unwrap()], dir.path());
        assert!(out.contains("SUCCESS"), "{out}");
    }
}

/// The supervisord config of the ConfigMap, written out as the pod sees it (under `dir`
/// instead of /etc/supervisor); the path of supervisord.conf.
fn write_supervisor_config(dir: &TempDir) -> PathBuf {
    let cm = object("ConfigMap", "lamp-supervisor");
    let deployment = object("Deployment", "lamp");
    let volume = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == "lamp-supervisor")
        .expect("a volume from the ConfigMap lamp-supervisor")
        .clone();
    std::fs::create_dir_all(dir.path().join("conf.d")).unwrap();
    for item in volume["configMap"]["items"].as_array().unwrap() {
        let key = item["key"].as_str().unwrap();
        let text = cm["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("the ConfigMap has no key {key}"))
            .replace("/etc/supervisor/", &format!("{}/", dir.path().display()));
        dir.write(item["path"].as_str().unwrap(), &text);
    }
    dir.path().join("supervisord.conf")
}

/// `key=value` in a supervisord config text (the first one).
fn ini_value<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.trim().strip_prefix('='))
        .map(str::trim)
        .next()
        .unwrap_or_else(|| panic!("no {key}= in\n{text}"))
}

#[test]
fn the_configmap_config_is_accepted_and_the_pieces_agree() {
    let dir = TempDir::new("k8s-config");
    let conf = write_supervisor_config(&dir);
    let (code, out, err) = run_cli(&["check", "-c", conf.to_str().unwrap()]);
    assert_eq!(code, 0, "supervisor check:\n{out}\n{err}");
    for program in ["mysqld", "apache2"] {
        assert!(out.contains(program), "{program} missing from:\n{out}");
    }
    // Written for this supervisor: nothing in it is ignored.
    assert!(!out.contains("notice"), "{out}");

    let cm = object("ConfigMap", "lamp-supervisor");
    let main = cm["data"]["supervisord.conf"].as_str().unwrap();
    let metrics_port: u16 = ini_value(main, "metrics_addr")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .expect("metrics_addr port");
    assert!(
        ini_value(main, "metrics_addr").starts_with("0.0.0.0:"),
        "probes come from the pod IP"
    );
    let budget: u64 = ini_value(main, "shutdown_timeout").parse().unwrap();
    // Programs stop one after another within the budget.
    let stops: u64 = ["mysqld.conf", "apache2.conf"]
        .iter()
        .map(|k| {
            ini_value(cm["data"][k].as_str().unwrap(), "stopwaitsecs")
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert!(
        stops <= budget,
        "stopwaitsecs add up to {stops}, over the {budget} s budget"
    );

    let deployment = object("Deployment", "lamp");
    let pod = &deployment["spec"]["template"];
    let spec = &pod["spec"];
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace > budget,
        "grace period {grace} s must exceed the budget {budget} s"
    );
    let c = &spec["containers"][0];
    let port_named = |name: &str| {
        c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no container port {name}"))["containerPort"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(port_named("metrics"), u64::from(metrics_port));
    for (probe, path) in [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/readyz"),
    ] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{probe}");
    }
    let env: Vec<(&str, &str)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["valueFrom"]["fieldRef"]["fieldPath"]
                    .as_str()
                    .unwrap_or(""),
            )
        })
        .collect();
    assert!(env.contains(&("POD_NAME", "metadata.name")), "{env:?}");
    assert!(
        env.contains(&("POD_NAMESPACE", "metadata.namespace")),
        "{env:?}"
    );
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], metrics_port.to_string());

    // The Service and the PodMonitor find the pods, by label and port name.
    let labels = &pod["metadata"]["labels"];
    let matches = |selector: &Value| {
        selector
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| &labels[k] == v)
    };
    let service = object("Service", "lamp");
    assert!(matches(&service["spec"]["selector"]));
    for p in service["spec"]["ports"].as_array().unwrap() {
        port_named(p["targetPort"].as_str().unwrap());
    }
    let monitor = object("PodMonitor", "lamp-supervisor");
    assert!(matches(&monitor["spec"]["selector"]["matchLabels"]));
    assert_eq!(monitor["spec"]["podMetricsEndpoints"][0]["port"], "metrics");
}

/// A real Prometheus, killed by its pid when dropped.
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
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.err")).expect("log file"))
            .spawn()
            .expect(
                "start /usr/bin/prometheus (Debian's prometheus; `cargo xtask test` installs it)",
            );
        Prometheus {
            child,
            addr,
            dir: dir.to_path_buf(),
        }
    }

    fn logs(&self) -> String {
        tail(
            &std::fs::read_to_string(self.dir.join("prometheus.err")).unwrap_or_default(),
            30,
        )
    }

    /// The active targets, once Prometheus answers and has scraped them all at least once.
    fn scraped_targets(&self) -> Vec<Value> {
        let deadline = Instant::now() + T;
        loop {
            let body = http_raw(
                &self.addr,
                format!(
                    "GET /api/v1/targets HTTP/1.0\r\nHost: {}\r\n\r\n",
                    self.addr
                )
                .as_bytes(),
            )
            .map(|r| r.body)
            .unwrap_or_default();
            if let Ok(v) = serde_json::from_str::<Value>(&body) {
                let active = v["data"]["activeTargets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if !active.is_empty() && active.iter().all(|t| t["health"] != "unknown") {
                    return active;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no scraped targets: {body}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of the child this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The labels Kubernetes pod discovery gives one declared container port.
fn discovered(pod: &str, port_name: &str, port: u16, annotated: bool, metrics: &str) -> Value {
    let mut labels = json!({
        "__meta_kubernetes_namespace": "shop",
        "__meta_kubernetes_pod_name": pod,
        "__meta_kubernetes_pod_ip": "127.0.0.1",
        "__meta_kubernetes_pod_container_name": "lamp",
        "__meta_kubernetes_pod_container_port_name": port_name,
    });
    if annotated {
        let l = labels.as_object_mut().unwrap();
        l.insert(
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape".into(),
            json!("true"),
        );
        l.insert(
            "__meta_kubernetes_pod_annotation_prometheus_io_port".into(),
            json!(metrics),
        );
        l.insert(
            "__meta_kubernetes_pod_annotation_prometheus_io_path".into(),
            json!("/metrics"),
        );
    }
    json!({"targets": [format!("127.0.0.1:{port}")], "labels": labels})
}

#[test]
fn the_annotation_relabelling_scrapes_the_supervisor_of_each_annotated_pod() {
    let dir = TempDir::new("k8s-annotations");
    let metrics = free_port().to_string();
    let sup = Sup::start(
        Mode::Child,
        dir.path(),
        &[
            "run",
            "--metrics-addr",
            &format!("127.0.0.1:{metrics}"),
            "--probe",
            "off",
            "--",
            "sleep",
            "1000",
        ],
    );
    sup.wait_event("the HTTP endpoint", T, |e| {
        kind(e) == "notice" && msg(e).starts_with("HTTP endpoint listening")
    });

    // The shipped config, with pod discovery replaced by a file holding what discovery would
    // find (Debian's Prometheus is built without Kubernetes discovery): the lamp pod's two
    // ports (http 8080, metrics), and a pod without the annotations.
    let shipped = yaml_docs(&read(&kit().join("prometheus-scrape-annotations.yml")));
    let mut config = shipped[0].clone();
    let job = &mut config["scrape_configs"][0];
    assert_eq!(job["kubernetes_sd_configs"][0]["role"], "pod");
    job.as_object_mut().unwrap().remove("kubernetes_sd_configs");
    let sd = dir.write(
        "pods.json",
        &json!([
            discovered("lamp-1", "http", 8080, true, &metrics),
            discovered(
                "lamp-1",
                "metrics",
                metrics.parse().unwrap(),
                true,
                &metrics
            ),
            discovered(
                "other-1",
                "metrics",
                metrics.parse().unwrap(),
                false,
                &metrics
            ),
        ])
        .to_string(),
    );
    job["file_sd_configs"] = json!([{"files": [sd]}]);
    job["scrape_interval"] = json!("1s");
    // The rule files exist next to the config, as the comment in it says.
    for (from, to) in [
        ("alerts.yml", "supervisor-alerts.yml"),
        ("recording.yml", "supervisor-recording.yml"),
    ] {
        dir.write(to, &read(&root().join("dashboards").join(from)));
    }
    let text = config.to_string();
    let conf = dir.write("prometheus.yml", &text);
    promtool(&["check", "config", conf.to_str().unwrap()], dir.path());

    let prom = Prometheus::start(dir.path(), &text);
    let targets = prom.scraped_targets();
    assert_eq!(
        targets.len(),
        1,
        "one target per annotated pod: {targets:#?}"
    );
    let t = &targets[0];
    assert_eq!(t["health"], "up", "{t:#}\n{}", prom.logs());
    let labels = &t["labels"];
    assert_eq!(labels["job"], "supervisor");
    assert_eq!(labels["namespace"], "shop");
    assert_eq!(labels["pod"], "lamp-1");
    assert_eq!(labels["container"], "lamp");
    assert_eq!(labels["instance"], format!("127.0.0.1:{metrics}"));
    assert_eq!(
        t["scrapeUrl"],
        format!("http://127.0.0.1:{metrics}/metrics")
    );
    drop(prom);
    drop(sup);
}
