//! A target of the evaluation and its verdict: the one record the report
//! and each section that sets targets of its own (`tls`) share.

/// A target: what, our value, met (None: not measured).
pub struct Target {
    pub what: String,
    pub ours: String,
    pub met: Option<bool>,
}

/// How a target reads in the report.
pub fn verdict(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured",
    }
}
