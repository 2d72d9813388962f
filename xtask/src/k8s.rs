//! `cargo xtask k8s [--check]`: writes examples/kubernetes/prometheusrule.yaml from the rule
//! files in dashboards/ ([`crate::k8s_rules`]), so the PrometheusRule and the rules Prometheus
//! users load directly cannot drift; `--check` only says whether the file is up to date.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::k8s_rules::{prometheus_rule, OUTPUT, SOURCES};
use crate::util;

pub fn run(args: &[String]) -> Result<ExitCode> {
    let check = match args {
        [] => false,
        [flag] if flag == "--check" => true,
        [other, ..] => bail!("unknown option for `k8s`: {other} (only --check)"),
    };
    let root = util::workspace_root();
    let mut texts = Vec::new();
    for path in SOURCES {
        let text = std::fs::read_to_string(root.join(path))
            .with_context(|| format!("cannot read {path}"))?;
        texts.push((path, text));
    }
    let sources: Vec<(&str, &str)> = texts.iter().map(|(p, t)| (*p, t.as_str())).collect();
    let manifest = prometheus_rule(&sources).map_err(anyhow::Error::msg)?;
    let out = root.join(OUTPUT);
    let current = std::fs::read_to_string(&out).unwrap_or_default();
    if current == manifest {
        println!("==> {OUTPUT} is up to date");
        return Ok(ExitCode::SUCCESS);
    }
    if check {
        eprintln!("xtask: {OUTPUT} differs from what {SOURCES:?} make: run `cargo xtask k8s`");
        return Ok(ExitCode::FAILURE);
    }
    std::fs::write(&out, manifest).with_context(|| format!("cannot write {OUTPUT}"))?;
    println!("==> wrote {OUTPUT}");
    Ok(ExitCode::SUCCESS)
}
