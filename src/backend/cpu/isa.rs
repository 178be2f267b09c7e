//! The instruction-set level the CPU kernels run at, chosen at run time: the best this CPU
//! has (AVX-512, else AVX2+FMA, else portable code as built), or a lower level forced with
//! `ASA_LTH_ISA=avx512|avx2|portable` — so one binary runs well everywhere and every path can
//! be tested on a machine that has the highest one. Levels differ only in rounding (the GEMM
//! blocks and the vector widths change the summation order).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// An instruction-set level, ordered from least to most capable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// What the build targets (SSE2 on x86-64), no run-time feature use.
    Portable,
    /// AVX2 and FMA (x86-64-v3): 8-wide f32 vectors.
    Avx2,
    /// AVX-512 F/BW/DQ/VL on top of AVX2 (x86-64-v4): 16-wide f32 vectors.
    Avx512,
}

/// The variable that forces a lower level.
pub const ENV: &str = "ASA_LTH_ISA";

impl Isa {
    /// Every level, lowest first.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2, Isa::Avx512];

    /// The name used by `ASA_LTH_ISA`, `asa-lth info` and benchmark reports.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Parse a level name (as [`name`](Self::name) writes it).
    pub fn parse(s: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|l| l.name() == s.trim())
    }

    /// The levels this CPU can run, lowest first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|&l| l <= detected()).collect()
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The best level this CPU supports (detected once).
pub fn detected() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let v3 = has!("avx2") && has!("fma");
            if v3 && has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") {
                return Isa::Avx512;
            }
            if v3 {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    })
}

/// Whether the CPU also has AVX-512 conflict detection and vector popcount (CD, VPOPCNTDQ;
/// Ice Lake and later), which the top-k histogram's gather/scatter path needs (detected once).
/// Used only when [`active`] is [`Isa::Avx512`].
pub fn has_avx512_conflict() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            detected() == Isa::Avx512 && has!("avx512cd") && has!("avx512vpopcntdq")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// The level `ASA_LTH_ISA` asks for, checked against this CPU: `Ok(None)` when unset, an error
/// naming the variable when the value is no level or one this CPU lacks.
pub fn requested() -> Result<Option<Isa>, String> {
    requested_from(std::env::var(ENV).ok().as_deref(), detected())
}

fn requested_from(value: Option<&str>, best: Isa) -> Result<Option<Isa>, String> {
    let Some(v) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let want = Isa::parse(v).ok_or_else(|| {
        format!("{ENV}={v}: not an instruction-set level; expected avx512, avx2 or portable")
    })?;
    if want > best {
        return Err(format!(
            "{ENV}={v}: this CPU's best level is {best}; a level can only be lowered"
        ));
    }
    Ok(Some(want))
}

const UNSET: u8 = u8::MAX;
static CAP: AtomicU8 = AtomicU8::new(UNSET);

fn code(l: Isa) -> u8 {
    l as u8
}

fn from_code(c: u8) -> Isa {
    Isa::ALL[(c as usize).min(Isa::ALL.len() - 1)]
}

/// The level the kernels run at now: [`detected`], lowered by `ASA_LTH_ISA` or
/// [`set_cap`].
///
/// # Panics
/// When `ASA_LTH_ISA` holds no valid level for this CPU; the command line checks
/// [`requested`] first and reports that as an error before any work.
#[inline]
pub fn active() -> Isa {
    let c = CAP.load(Ordering::Relaxed);
    if c != UNSET {
        return from_code(c);
    }
    let level = match requested() {
        Ok(r) => r.unwrap_or(detected()),
        Err(e) => panic!("{e}"),
    };
    // Another thread may have set a cap meanwhile; theirs wins.
    let _ = CAP.compare_exchange(UNSET, code(level), Ordering::Relaxed, Ordering::Relaxed);
    from_code(CAP.load(Ordering::Relaxed))
}

/// Run the kernels at `level` (capped at what the CPU has) from now on, for the whole
/// process; returns the level in force. For tests and benchmarks that compare levels in one
/// process — kernels already running finish at their level.
pub fn set_cap(level: Isa) -> Isa {
    let l = level.min(detected());
    CAP.store(code(l), Ordering::Relaxed);
    l
}

/// Run `f` at `level` and restore the previous level afterwards (see [`set_cap`]).
pub fn with_level<R>(level: Isa, f: impl FnOnce() -> R) -> R {
    let before = active();
    set_cap(level);
    let r = f();
    set_cap(before);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_refuse() {
        assert_eq!(requested_from(None, Isa::Avx2), Ok(None));
        assert_eq!(requested_from(Some(""), Isa::Avx2), Ok(None));
        assert_eq!(
            requested_from(Some("avx2"), Isa::Avx512),
            Ok(Some(Isa::Avx2))
        );
        assert_eq!(
            requested_from(Some("portable"), Isa::Avx2),
            Ok(Some(Isa::Portable))
        );
        let e = requested_from(Some("avx512"), Isa::Avx2).unwrap_err();
        assert!(
            e.contains("ASA_LTH_ISA=avx512") && e.contains("avx2"),
            "{e}"
        );
        let e = requested_from(Some("sse9"), Isa::Avx512).unwrap_err();
        assert!(e.contains("ASA_LTH_ISA=sse9"), "{e}");
        for l in Isa::ALL {
            assert_eq!(Isa::parse(l.name()), Some(l));
        }
        assert!(Isa::Portable < Isa::Avx2 && Isa::Avx2 < Isa::Avx512);
    }
}
