//! README's command table is the command line's own `--help` text (issue 19): regenerate it
//! from this test's output when a subcommand changes.

use std::process::Command;

/// `(name, about)` of every subcommand `asa-lth ARGS --help` lists (without `help`).
fn commands(args: &[&str]) -> Vec<(String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_asa-lth"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| {
            let l = l.trim_start();
            let (name, about) = l.split_once(' ')?;
            (name != "help").then(|| (name.to_string(), about.trim().to_string()))
        })
        .collect()
}

#[test]
fn readme_command_table_is_the_help_text() {
    let mut table = String::from("| command | what it does |\n|---|---|\n");
    for (name, about) in commands(&[]) {
        if name == "asa" {
            for (sub, about) in commands(&["asa"]) {
                table += &format!("| `asa-lth asa {sub}` | {} |\n", about.replace('|', "\\|"));
            }
        } else {
            table += &format!("| `asa-lth {name}` | {} |\n", about.replace('|', "\\|"));
        }
    }
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let begin = "<!-- commands: generated from --help by tests/readme.rs -->\n";
    let end = "<!-- commands: end -->";
    let got = readme
        .split_once(begin)
        .and_then(|(_, rest)| rest.split_once(end))
        .map(|(t, _)| t)
        .unwrap_or("(no table between the markers)");
    assert!(
        got == table,
        "README's command table differs from --help; replace it with:\n{begin}{table}{end}"
    );
}

/// README's findings blocks are the claims tables of the committed runs (the embedded default
/// and the EWT reference run), as `asa-lth report --run RUN --readme README.md` writes them.
#[test]
fn readme_findings_are_the_committed_runs_claims_tables() {
    use asa_lth::experiments::report::{self, findings_block, replace_findings};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for run in ["results/reproduce-small", "results/reproduce-ewt"] {
        let out = std::env::temp_dir().join(format!("asa-lth-readme-{}", std::process::id()));
        let s = report::write_report(&root.join(run), &out, "test")
            .unwrap_or_else(|e| panic!("report of the committed run {run}: {e}"));
        let _ = std::fs::remove_dir_all(&out);
        let want = replace_findings(
            &readme,
            run,
            &findings_block(run, &s),
            std::path::Path::new("README.md"),
        )
        .unwrap();
        assert!(
            want == readme,
            "README's findings block of {run} is stale: run `asa-lth report --run {run} \
             --readme README.md`"
        );
    }
    let e = replace_findings("no block", "runs/x", "x", std::path::Path::new("R.md")).unwrap_err();
    assert!(
        e.to_string().contains("R.md") && e.to_string().contains("runs/x"),
        "{e}"
    );
}
