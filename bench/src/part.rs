//! What each part of the bench that brings up labs of its own (`idle`,
//! `proxy`, `tls`) is given by the run.

use std::path::Path;

use anyhow::Result;

pub struct Ctx<'a> {
    /// The hotpair binary under test.
    pub exe: &'a Path,
    /// The run's lab prefix; a part adds a letter per lab.
    pub base: &'a str,
    pub logs: &'a Path,
    /// The run's docroot (holds 1k.bin and 50k.bin).
    pub docroot: &'a Path,
    pub quick: bool,
    pub node_cpus: f64,
    /// Seconds per closed-loop point.
    pub seconds: f64,
    pub progress: &'a dyn Fn(&str),
    pub interrupted: &'a dyn Fn() -> Result<()>,
}
