//! `LTSHIM_*` environment knobs: one table, parsed once, validated.
//!
//! The table below is the single source of truth: the parser, the unknown-name check, the
//! stats report's "effective configuration" and the README's knob table (a unit test renders
//! it and checks README.md holds it) all come from it. A bad value is reported in one line
//! naming the variable, the value and what is accepted; the library then passes through.
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Off,
    Observe,
    Lossless,
    Lossy,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Observe => "observe",
            Mode::Lossless => "lossless",
            Mode::Lossy => "lossy",
        }
    }
}

impl Mode {
    /// True in the modes that pack buffers.
    pub fn packs(self) -> bool {
        matches!(self, Mode::Lossless | Mode::Lossy)
    }
}

/// `LTSHIM_DEVICE_LIMIT`: the physical memory the process may hold through the library.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    /// The card's memory (no limit set).
    Card,
    Bytes(u64),
    /// A fraction of the card's memory.
    Fraction(f64),
}

/// `LTSHIM_HOST_COPIES`: the host memory packed copies may move to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HostCopies {
    Bytes(u64),
    /// A fraction of the host's physical memory.
    Fraction(f64),
}

impl HostCopies {
    /// In bytes, on this host.
    pub fn bytes(self) -> u64 {
        match self {
            HostCopies::Bytes(b) => b,
            HostCopies::Fraction(f) => (host_memory_bytes() as f64 * f) as u64,
        }
    }
}

/// The host memory this process may have: `MemTotal` of /proc/meminfo, or its memory
/// cgroup's limit where that is lower (a container's: pinned memory counts against it). 0
/// when neither can be read: then a percentage allows nothing.
fn host_memory_bytes() -> u64 {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let info = read("/proc/meminfo").unwrap_or_default();
    let total = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024);
    let groups = read("/proc/self/cgroup").unwrap_or_default();
    let limit = cgroup_limit_files(&groups).iter().filter_map(|f| read(f)).filter_map(|v| cgroup_limit(&v)).min();
    limit.map_or(total, |l| if total == 0 { l } else { l.min(total) })
}

/// The memory limit files that bound this process, from /proc/self/cgroup's text: those of its
/// group and of every group above it, cgroup v2's (`0::/path`) and v1's (`N:memory:/path`).
/// Inside a container's namespace the path is `/` and the files are the mount's own.
fn cgroup_limit_files(groups: &str) -> Vec<String> {
    let mut files = Vec::new();
    for line in groups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let (dir, file) = match controllers {
            "" => ("/sys/fs/cgroup", "memory.max"),
            c if c.split(',').any(|c| c == "memory") => ("/sys/fs/cgroup/memory", "memory.limit_in_bytes"),
            _ => continue,
        };
        let mut path = path.trim().trim_end_matches('/');
        loop {
            files.push(format!("{dir}{path}/{file}"));
            match path.rfind('/') {
                Some(i) => path = &path[..i],
                None => break,
            }
        }
    }
    files
}

/// A cgroup memory limit file's bytes; None for none (`max`, or v1's near-2^63 "unlimited").
fn cgroup_limit(v: &str) -> Option<u64> {
    v.trim().parse::<u64>().ok().filter(|&b| b > 0 && b < 1 << 62)
}

#[derive(Clone, Debug)]
pub struct Config {
    pub mode: Mode,
    pub log: String,
    pub stats: Option<String>,
    pub int8_group: u32,
    pub int8_max_err: f32,
    pub device_limit: Limit,
    pub min_bytes: u64,
    pub min_saving: f64,
    pub idle_ms: u64,
    pub cold_ms: u64,
    pub pack_ahead: bool,
    pub restore_ahead: bool,
    pub host_copies: HostCopies,
    /// Problems found while parsing; non-empty means passthrough.
    pub errors: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::Lossless,
            log: "warn".into(),
            stats: None,
            int8_group: 128,
            int8_max_err: 0.01,
            device_limit: Limit::Card,
            min_bytes: 2 << 20,
            min_saving: 0.05,
            idle_ms: 0,
            cold_ms: 1000,
            pack_ahead: true,
            restore_ahead: true,
            host_copies: HostCopies::Fraction(0.25),
            errors: Vec::new(),
        }
    }
}

/// Bytes with an optional unit: `12GiB`, `500MiB`, `1.5GB`, `4096`.
pub fn parse_bytes(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024f64.powi(4),
        _ => return None,
    };
    let bytes = n * mult;
    (bytes.is_finite() && bytes >= 1.0 && bytes < 2f64.powi(63)).then_some(bytes as u64)
}

fn parse_limit(v: &str) -> Option<Limit> {
    if let Some(p) = v.trim().strip_suffix('%') {
        let f: f64 = p.trim().parse().ok()?;
        return (f > 0.0 && f <= 100.0).then_some(Limit::Fraction(f / 100.0));
    }
    parse_bytes(v).map(Limit::Bytes)
}

fn parse_ms(v: &str) -> Option<u64> {
    v.trim().parse::<u64>().ok().filter(|&ms| ms <= 86_400_000)
}

#[cfg_attr(not(test), allow(dead_code))] // default/doc feed the README table (tests)
pub struct Knob {
    pub name: &'static str,
    pub default: &'static str,
    pub accepted: &'static str,
    pub doc: &'static str,
    apply: fn(&str, &mut Config) -> bool,
}

pub const KNOBS: &[Knob] = &[
    Knob {
        name: "LTSHIM_MODE",
        default: "lossless",
        accepted: "off, observe, lossless, lossy",
        doc: "`off`: pure passthrough, nothing recorded. `observe`: record every allocation, \
              copy and launch, change nothing (exact passthrough, no VMM). `lossless`: buffers of \
              at least `LTSHIM_MIN_BYTES` are VMM-backed and packed bit-exactly (raw, zvc, expf) when \
              memory is needed. `lossy`: as lossless, and blocks of buffers that a GEMM operand \
              spans whole (less 1 MiB) as floats and that were only read since their last restore \
              (weights, not activations) may go int8g under `LTSHIM_INT8_MAX_ERR`; a buffer whose \
              lossy-decoded bytes were then written (a weight a training step updated) stays \
              lossless from then on. For inference; not yet shown safe for training (Limits).",
        apply: |v, c| {
            c.mode = match v {
                "off" => Mode::Off,
                "observe" => Mode::Observe,
                "lossless" => Mode::Lossless,
                "lossy" => Mode::Lossy,
                _ => return false,
            };
            true
        },
    },
    Knob {
        name: "LTSHIM_LOG",
        default: "warn",
        accepted: "a tracing filter: error, warn, info, debug, trace (or target=level lists)",
        doc: "What the library logs to stderr, each line prefixed `ltshim[pid]`.",
        apply: |v, c| {
            if tracing_subscriber::EnvFilter::try_new(v).is_err() || v.trim().is_empty() {
                return false;
            }
            c.log = v.to_string();
            true
        },
    },
    Knob {
        name: "LTSHIM_STATS",
        default: "(unset: no report)",
        accepted: "a file path; `%p` in it becomes the process id",
        doc: "Where the JSON stats report is written at exit, by processes that made CUDA calls. \
              `ltshim stats FILE` prints it as a table.",
        apply: |v, c| {
            if v.is_empty() {
                return false;
            }
            c.stats = Some(v.to_string());
            true
        },
    },
    Knob {
        name: "LTSHIM_INT8_GROUP",
        default: "128",
        accepted: "an integer 1..65535",
        doc: "Elements per scale of the lossy int8g codec: 128 gives ~0.68% error on normal weights at 1.94x, 16 gives ~0.49% at 1.6x; under 16 (8 for f32) full 64 KiB blocks stay lossless (`ltshim pack` reads it too).",
        apply: |v, c| match v.parse::<u32>() {
            Ok(g) if (1..=65535).contains(&g) => {
                c.int8_group = g;
                true
            }
            _ => false,
        },
    },
    Knob {
        name: "LTSHIM_INT8_MAX_ERR",
        default: "0.01",
        accepted: "a relative L2 error, 0 to 1",
        doc: "A block goes lossy only if its relative L2 error stays at or under this; otherwise it stays lossless (`ltshim pack` reads it too).",
        apply: |v, c| match v.parse::<f32>() {
            Ok(e) if (0.0..=1.0).contains(&e) => {
                c.int8_max_err = e;
                true
            }
            _ => false,
        },
    },
    Knob {
        name: "LTSHIM_DEVICE_LIMIT",
        default: "(unset: the card)",
        accepted: "bytes with an optional unit (`12GiB`, `500MiB`, `4096`) or a percentage of the card (`60%`)",
        doc: "Emulates a smaller GPU in the packing modes: the physical memory held through the library (resident buffers, packed copies, pass-through allocations, its scratch) never exceeds it; cold buffers are packed to make room, else the allocation gets the out-of-memory code; `cudaMemGetInfo`/`cuMemGetInfo` report it. Unset (or above the card): the card, and an allocation that fails for lack of memory packs cold buffers and retries.",
        apply: |v, c| match parse_limit(v) {
            Some(l) => {
                c.device_limit = l;
                true
            }
            None => false,
        },
    },
    Knob {
        name: "LTSHIM_MIN_BYTES",
        default: "2MiB",
        accepted: "bytes with an optional unit, at least 64KiB",
        doc: "Allocations at least this large are VMM-backed (packable) in the packing modes; smaller ones, stream-ordered ones and memory the program maps itself pass through and are counted.",
        apply: |v, c| match parse_bytes(v) {
            Some(b) if b >= 64 << 10 => {
                c.min_bytes = b;
                true
            }
            _ => false,
        },
    },
    Knob {
        name: "LTSHIM_MIN_SAVING",
        default: "0.05",
        accepted: "a fraction, 0 to 0.9",
        doc: "A buffer is packed only if its packed copy is smaller than its size by at least this fraction; one that does not shrink enough stays resident (and is tried again later, at most three times).",
        apply: |v, c| match v.trim().parse::<f64>() {
            Ok(f) if (0.0..=0.9).contains(&f) => {
                c.min_saving = f;
                true
            }
            _ => false,
        },
    },
    Knob {
        name: "LTSHIM_IDLE_MS",
        default: "0 (off)",
        accepted: "milliseconds, 0 to 86400000",
        doc: "Idle packing: after this long with no CUDA call from the program, buffers unused for `LTSHIM_COLD_MS` are packed by a background thread (two models in one process, a notebook left idle). 0 turns it off.",
        apply: |v, c| match parse_ms(v) {
            Some(ms) => {
                c.idle_ms = ms;
                true
            }
            None => false,
        },
    },
    Knob {
        name: "LTSHIM_PACK_AHEAD",
        default: "on",
        accepted: "on, off",
        doc: "Under `LTSHIM_DEVICE_LIMIT`, a background thread keeps 1/32 of the limit (64-512 MiB) free by dropping buffers that were only read since their restore (their packed copy still holds them), so that a restore finds room without waiting for another buffer to go. `off`: all packing happens in the call that needs the room.",
        apply: |v, c| on_off(v).map(|on| c.pack_ahead = on).is_some(),
    },
    Knob {
        name: "LTSHIM_RESTORE_AHEAD",
        default: "on",
        accepted: "on, off",
        doc: "Under `LTSHIM_DEVICE_LIMIT`, the same background thread restores the packed buffers whose next use it predicts soonest (from the order the program used them in before) into free room, so that a repeated pass over weights finds them resident and its calls only wait for their decode on the GPU. It never passes the limit for this, and frees room for it only by dropping clean buffers it predicts are needed later. `off`: every restore happens in the call that needs the buffer.",
        apply: |v, c| on_off(v).map(|on| c.restore_ahead = on).is_some(),
    },
    Knob {
        name: "LTSHIM_HOST_COPIES",
        default: "25%",
        accepted: "bytes with an optional unit, a percentage of the host's memory (`25%`; of its memory cgroup's limit where that is lower), or 0 (never)",
        doc: "Packed copies of packed buffers may move to pinned host memory, up to this much over every device: the copies of buffers predicted to be needed much later than the buffer that would otherwise be encoded to make room (a training step's optimizer states), and, when device memory has no other room (every resident buffer in use or kept by the safety rules, every kept copy gone), the coldest, instead of the limit being passed or the allocation failing. Such a buffer decodes from host memory over the bus when next used (slower, exact as ever); `host_copies_bytes` in the stats says how much went there.",
        apply: |v, c| match v.trim() {
            "0" => {
                c.host_copies = HostCopies::Bytes(0);
                true
            }
            v => match parse_limit(v) {
                Some(Limit::Bytes(b)) => {
                    c.host_copies = HostCopies::Bytes(b);
                    true
                }
                Some(Limit::Fraction(f)) => {
                    c.host_copies = HostCopies::Fraction(f);
                    true
                }
                _ => false,
            },
        },
    },
    Knob {
        name: "LTSHIM_COLD_MS",
        default: "1000",
        accepted: "milliseconds, 0 to 86400000",
        doc: "How long a buffer must go unused before idle packing takes it.",
        apply: |v, c| match parse_ms(v) {
            Some(ms) => {
                c.cold_ms = ms;
                true
            }
            None => false,
        },
    },
];

/// A knob problem, printed as one line.
pub struct KnobError<'a> {
    pub name: &'a str,
    pub value: &'a str,
    pub accepted: Option<&'static str>,
}

impl fmt::Display for KnobError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.accepted {
            Some(acc) => write!(
                f,
                "ltshim: {}={:?} is not valid (accepted: {}); passing everything through",
                self.name, self.value, acc
            ),
            None => {
                let known: Vec<&str> = KNOBS.iter().map(|k| k.name).collect();
                write!(
                    f,
                    "ltshim: unknown variable {}={:?} (known: {}); passing everything through",
                    self.name,
                    self.value,
                    known.join(", ")
                )
            }
        }
    }
}

impl Config {
    /// Parses the `LTSHIM_*` pairs of an environment.
    pub fn from_vars<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Config {
        let mut config = Config::default();
        for (name, value) in vars {
            if !name.starts_with("LTSHIM_") {
                continue;
            }
            match KNOBS.iter().find(|k| k.name == name) {
                Some(knob) => {
                    if !(knob.apply)(value, &mut config) {
                        config.errors.push(KnobError { name, value, accepted: Some(knob.accepted) }.to_string());
                    }
                }
                None => config.errors.push(KnobError { name, value, accepted: None }.to_string()),
            }
        }
        config
    }

    pub fn from_env() -> Config {
        let vars: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
            .filter(|(k, _)| k.starts_with("LTSHIM_"))
            .collect();
        Config::from_vars(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// True when the library should observe at all.
    pub fn observes(&self) -> bool {
        self.errors.is_empty() && self.mode != Mode::Off
    }

    /// `(name, value)` of every knob as in force, for the stats report.
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LTSHIM_MODE", self.mode.as_str().to_string()),
            ("LTSHIM_LOG", self.log.clone()),
            ("LTSHIM_STATS", self.stats.clone().unwrap_or_default()),
            ("LTSHIM_INT8_GROUP", self.int8_group.to_string()),
            ("LTSHIM_INT8_MAX_ERR", self.int8_max_err.to_string()),
            (
                "LTSHIM_DEVICE_LIMIT",
                match self.device_limit {
                    Limit::Card => "card".to_string(),
                    Limit::Bytes(b) => b.to_string(),
                    Limit::Fraction(f) => format!("{}%", f * 100.0),
                },
            ),
            ("LTSHIM_MIN_BYTES", self.min_bytes.to_string()),
            ("LTSHIM_MIN_SAVING", self.min_saving.to_string()),
            ("LTSHIM_IDLE_MS", self.idle_ms.to_string()),
            ("LTSHIM_COLD_MS", self.cold_ms.to_string()),
            ("LTSHIM_PACK_AHEAD", if self.pack_ahead { "on" } else { "off" }.to_string()),
            ("LTSHIM_RESTORE_AHEAD", if self.restore_ahead { "on" } else { "off" }.to_string()),
            (
                "LTSHIM_HOST_COPIES",
                match self.host_copies {
                    HostCopies::Bytes(b) => b.to_string(),
                    HostCopies::Fraction(f) => format!("{}%", f * 100.0),
                },
            ),
        ]
    }
}

/// An on/off knob's value.
fn on_off(v: &str) -> Option<bool> {
    match v {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// The README's knob table, rendered from `KNOBS`.
#[cfg(test)]
pub fn markdown_table() -> String {
    let mut s = String::from("| variable | default | accepted | what it does |\n|---|---|---|---|\n");
    for k in KNOBS {
        s.push_str(&format!("| `{}` | {} | {} | {} |\n", k.name, k.default, k.accepted, k.doc.split_whitespace().collect::<Vec<_>>().join(" ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_lossless_with_no_variables() {
        let c = Config::from_vars([]);
        assert_eq!(c.mode, Mode::Lossless);
        assert!(c.errors.is_empty());
        assert!(c.observes());
    }

    #[test]
    fn each_mode_parses_and_off_does_not_observe() {
        for (v, m) in [("off", Mode::Off), ("observe", Mode::Observe), ("lossless", Mode::Lossless), ("lossy", Mode::Lossy)] {
            let c = Config::from_vars([("LTSHIM_MODE", v)]);
            assert_eq!(c.mode, m);
            assert!(c.errors.is_empty());
        }
        assert!(!Config::from_vars([("LTSHIM_MODE", "off")]).observes());
    }

    #[test]
    fn bad_value_names_variable_value_and_accepted_values() {
        let c = Config::from_vars([("LTSHIM_MODE", "fast")]);
        assert_eq!(c.errors.len(), 1);
        let line = &c.errors[0];
        assert!(line.contains("LTSHIM_MODE") && line.contains("\"fast\"") && line.contains("off, observe, lossless, lossy"), "{line}");
        assert!(!line.contains('\n'));
        assert!(!c.observes());
    }

    #[test]
    fn unknown_ltshim_variable_is_an_error_and_others_are_ignored() {
        let c = Config::from_vars([("LTSHIM_MDOE", "off"), ("PATH", "/bin")]);
        assert_eq!(c.errors.len(), 1);
        assert!(c.errors[0].contains("unknown variable LTSHIM_MDOE"), "{}", c.errors[0]);
    }

    #[test]
    fn bad_log_filter_is_rejected() {
        let c = Config::from_vars([("LTSHIM_LOG", "warn,[[[")]);
        assert_eq!(c.errors.len(), 1, "{:?}", c.errors);
    }

    #[test]
    fn device_limit_takes_units_and_percentages() {
        assert_eq!(Config::from_vars([("LTSHIM_DEVICE_LIMIT", "12GiB")]).device_limit, Limit::Bytes(12 << 30));
        assert_eq!(Config::from_vars([("LTSHIM_DEVICE_LIMIT", "500MiB")]).device_limit, Limit::Bytes(500 << 20));
        assert_eq!(Config::from_vars([("LTSHIM_DEVICE_LIMIT", "4096")]).device_limit, Limit::Bytes(4096));
        assert_eq!(Config::from_vars([("LTSHIM_DEVICE_LIMIT", "1.5GB")]).device_limit, Limit::Bytes(1_500_000_000));
        assert_eq!(Config::from_vars([("LTSHIM_DEVICE_LIMIT", "60%")]).device_limit, Limit::Fraction(0.6));
        for bad in ["", "0", "12 parsecs", "0%", "150%", "-1GiB", "GiB"] {
            let c = Config::from_vars([("LTSHIM_DEVICE_LIMIT", bad)]);
            assert_eq!(c.errors.len(), 1, "{bad:?} must be refused");
            assert!(c.errors[0].contains("LTSHIM_DEVICE_LIMIT") && c.errors[0].contains("percentage"), "{}", c.errors[0]);
        }
    }

    #[test]
    fn host_copies_take_bytes_a_share_of_the_host_or_zero() {
        assert_eq!(Config::default().host_copies, HostCopies::Fraction(0.25));
        assert_eq!(Config::from_vars([("LTSHIM_HOST_COPIES", "8GiB")]).host_copies, HostCopies::Bytes(8 << 30));
        assert_eq!(Config::from_vars([("LTSHIM_HOST_COPIES", "0")]).host_copies.bytes(), 0);
        let half = Config::from_vars([("LTSHIM_HOST_COPIES", "50%")]).host_copies;
        assert_eq!(half, HostCopies::Fraction(0.5));
        assert!(half.bytes() > 0, "this host's memory is known: /proc/meminfo");
        for bad in ["lots", "150%", "-1"] {
            let c = Config::from_vars([("LTSHIM_HOST_COPIES", bad)]);
            assert_eq!(c.errors.len(), 1, "{bad:?} must be refused");
            assert!(c.errors[0].contains("LTSHIM_HOST_COPIES") && c.errors[0].contains("host's memory"), "{}", c.errors[0]);
        }
    }

    #[test]
    fn the_cgroup_limits_read_are_those_of_the_group_and_every_group_above_it() {
        let v2 = cgroup_limit_files("0::/user.slice/job\n");
        assert_eq!(v2, ["/sys/fs/cgroup/user.slice/job/memory.max", "/sys/fs/cgroup/user.slice/memory.max", "/sys/fs/cgroup/memory.max"]);
        assert_eq!(cgroup_limit_files("0::/\n"), ["/sys/fs/cgroup/memory.max"]);
        let v1 = cgroup_limit_files("5:devices:/\n4:memory:/docker/abc\n1:cpu:/\n0::/\n");
        assert_eq!(v1, ["/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", "/sys/fs/cgroup/memory/docker/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"]);
    }

    #[test]
    fn a_cgroup_limit_is_a_number_short_of_unlimited() {
        assert_eq!(cgroup_limit("8589934592\n"), Some(8 << 30));
        for none in ["max\n", "9223372036854771712", "0", ""] {
            assert_eq!(cgroup_limit(none), None, "{none:?} is no limit");
        }
    }

    #[test]
    fn min_bytes_saving_and_idle_knobs_are_bounded() {
        let c = Config::from_vars([("LTSHIM_MIN_BYTES", "4MiB"), ("LTSHIM_MIN_SAVING", "0.25"), ("LTSHIM_IDLE_MS", "500"), ("LTSHIM_COLD_MS", "2000")]);
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!((c.min_bytes, c.min_saving, c.idle_ms, c.cold_ms), (4 << 20, 0.25, 500, 2000));
        for (k, v) in [("LTSHIM_MIN_BYTES", "1KiB"), ("LTSHIM_MIN_SAVING", "0.95"), ("LTSHIM_IDLE_MS", "soon")] {
            assert_eq!(Config::from_vars([(k, v)]).errors.len(), 1, "{k}={v}");
        }
    }

    #[test]
    fn readme_holds_the_knob_table() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let table = markdown_table();
        assert!(readme.contains(&table), "README.md must contain this table (generated from config::KNOBS):\n{table}");
    }
}
