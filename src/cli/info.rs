//! `asa-lth info` and `sample`.

use anyhow::{bail, Result};

pub(crate) fn info(verbose: bool) -> Result<()> {
    let probe = crate::backend::cuda::probe();
    println!("asa-lth {}", env!("CARGO_PKG_VERSION"));
    println!("cpu: {}", crate::provenance::cpu_summary());
    {
        use crate::backend::cpu::isa;
        let (active, best) = (isa::active(), isa::detected());
        let how = if active == best {
            format!("the best this CPU has; {}=… forces a lower level", isa::ENV)
        } else {
            format!("forced by {}; this CPU has {best}", isa::ENV)
        };
        println!("cpu instruction set: {active} ({how})");
    }
    println!("gpu: {}", probe.one_line_summary());
    println!("tags: {}", crate::ling::tagger::builtin::provenance());
    if verbose {
        println!("{}", probe.details());
    }
    Ok(())
}

pub(crate) fn sample_cmd(n: usize, seed: u64) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for (si, s) in crate::data::synthetic::generate(n, seed).iter().enumerate() {
        let (tags, heads) = match (&s.upos, &s.heads) {
            (Some(t), Some(h)) => (t, h),
            _ => bail!("synthetic sentence {si} lacks tags or heads"),
        };
        writeln!(out, "# sent_id = synthetic-{seed}-{si}")?;
        writeln!(out, "# text = {}", s.words.join(" "))?;
        for (i, w) in s.words.iter().enumerate() {
            writeln!(
                out,
                "{}\t{w}\t_\t{}\t_\t_\t{}\t_\t_\t_",
                i + 1,
                tags[i],
                heads[i]
            )?;
        }
        writeln!(out)?;
    }
    Ok(())
}
