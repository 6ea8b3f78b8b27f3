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

#[derive(Clone, Debug)]
pub struct Config {
    pub mode: Mode,
    pub log: String,
    pub stats: Option<String>,
    pub int8_group: u32,
    pub int8_max_err: f32,
    /// Problems found while parsing; non-empty means passthrough.
    pub errors: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config { mode: Mode::Observe, log: "warn".into(), stats: None, int8_group: 128, int8_max_err: 0.01, errors: Vec::new() }
    }
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
        default: "observe",
        accepted: "off, observe, lossless, lossy",
        doc: "`off`: pure passthrough, nothing recorded. `observe`: record every allocation, \
              copy and launch, change nothing. `lossless`/`lossy`: packing modes; until packing \
              is built they observe (and say so once).",
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
        doc: "Elements per scale of the lossy int8g codec: 128 gives ~0.68% error on normal weights at 1.94x, 16 gives ~0.49% at 1.6x; under 16 (8 for f32) full 64 KiB blocks stay lossless (`ltshim pack` reads it too; packing in the library is not built yet).",
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
        ]
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
    fn defaults_observe_with_no_variables() {
        let c = Config::from_vars([]);
        assert_eq!(c.mode, Mode::Observe);
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
    fn readme_holds_the_knob_table() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let table = markdown_table();
        assert!(readme.contains(&table), "README.md must contain this table (generated from config::KNOBS):\n{table}");
    }
}
