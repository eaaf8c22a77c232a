//! Shared parts of the `jobs import` suites (`import_registry`, `import_layout`): the jobs
//! binary run into a registry's database and storage, and the figures of its report.

use std::process::Stdio;

use crate::Registry;
use crate::api::jobs_command;

/// The jobs binary's command for `jobs import` into `reg`'s database and storage.
pub fn import_command(
    reg: &Registry,
    args: &[&str],
    env: &[(&str, &str)],
) -> tokio::process::Command {
    let args: Vec<&str> = std::iter::once("import")
        .chain(args.iter().copied())
        .collect();
    let mut command = jobs_command(reg, &args, env, "info");
    command.stdin(Stdio::null());
    command
}

/// Runs `jobs import`; its exit code and report (standard output).
pub async fn import(reg: &Registry, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = import_command(reg, args, env)
        .output()
        .await
        .expect("run jobs import");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = out.status.code().unwrap_or(-1);
    eprintln!("jobs import {args:?} → {code}:\n{report}");
    if code != 0 {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    (code, report)
}

/// The number just before `label` on the report's line starting with `line`.
pub fn count(report: &str, line: &str, label: &str) -> u64 {
    let text = report
        .lines()
        .find(|l| l.starts_with(line))
        .unwrap_or_else(|| panic!("no {line:?} line in:\n{report}"));
    let before = &text[..text
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} in {text}"))];
    before
        .trim_end()
        .rsplit([' ', ','])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a number before {label:?} in {text}"))
}
