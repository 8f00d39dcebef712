//! Progress reports from long steps (copying, uploading, restoring), so the CLI can draw bars
//! and a library caller can ignore them.

pub trait Progress {
    /// A step starts with `total` units (bytes or pages) to go.
    fn begin(&self, step: &str, total: u64);
    fn advance(&self, done: u64);
    fn end(&self);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn begin(&self, _step: &str, _total: u64) {}
    fn advance(&self, _done: u64) {}
    fn end(&self) {}
}
