//! Where a result came from: git commit, machine, time. Recorded in every results file.

/// The git commit this binary was built from (`<hash>`, `<hash>-dirty` when tracked files
/// differed from it at build time, or `unknown` outside a checkout), embedded by `build.rs`:
/// it names the code that ran wherever the binary runs, not the directory it runs in. (Cargo
/// reruns the build script when HEAD or the branch moves; the dirty flag is as of then.)
pub fn git_commit() -> String {
    env!("ASA_LTH_GIT_COMMIT").to_string()
}

/// CPU model name and thread count, e.g. `AMD EPYC 7B13 (2 threads)`.
pub fn cpu_summary() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!("{model} ({} threads)", rayon::current_num_threads())
}

/// The command line of this process as a user would retype it, with no machine paths: the
/// program as its file name (`asa-lth`, not the build directory it ran from), and any
/// absolute path argument (or `--flag=PATH` value) under the working directory made
/// relative to it, one under `$HOME` written `~/…`. Recorded in results and reports.
pub fn command_line() -> String {
    let cwd = std::env::current_dir().ok();
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    command_line_of(std::env::args(), cwd.as_deref(), home.as_deref())
}

/// [`command_line`] of the given arguments, working directory and home (for tests).
pub fn command_line_of(
    args: impl IntoIterator<Item = String>,
    cwd: Option<&std::path::Path>,
    home: Option<&std::path::Path>,
) -> String {
    use std::path::Path;
    let tidy = |a: &str| -> String {
        let p = Path::new(a);
        if !p.is_absolute() {
            return a.to_string();
        }
        if let Some(rel) = cwd.and_then(|c| p.strip_prefix(c).ok()) {
            let r = rel.display().to_string();
            return if r.is_empty() { ".".into() } else { r };
        }
        if let Some(rel) = home.and_then(|h| p.strip_prefix(h).ok()) {
            return format!("~/{}", rel.display());
        }
        a.to_string()
    };
    let mut out = Vec::new();
    for (i, a) in args.into_iter().enumerate() {
        if i == 0 {
            let name = Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(a);
            out.push(name);
            continue;
        }
        let word = match a.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => format!("{flag}={}", tidy(value)),
            _ => tidy(&a),
        };
        // Quote what a shell would split.
        out.push(if word.is_empty() || word.contains(char::is_whitespace) {
            format!("'{word}'")
        } else {
            word
        });
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::command_line_of;
    use std::path::Path;

    #[test]
    fn command_lines_carry_no_machine_paths() {
        let args = [
            "/home/u/src/asa-lth/target/release/asa-lth",
            "reproduce",
            "--data",
            "/home/u/src/asa-lth/data/UD_English-EWT",
            "--out=/home/u/runs/ewt",
            "--json",
            "/srv/shared/x.json",
            "--note",
            "two words",
        ]
        .map(String::from);
        let got = command_line_of(
            args,
            Some(Path::new("/home/u/src/asa-lth")),
            Some(Path::new("/home/u")),
        );
        assert_eq!(
            got,
            "asa-lth reproduce --data data/UD_English-EWT --out=~/runs/ewt --json \
             /srv/shared/x.json --note 'two words'"
        );
    }
}
