//! Per-stage timings, produced by every run.

use serde::Serialize;

/// Timing of one stage in one run.
#[derive(Debug, Clone, Serialize)]
pub struct StageTiming {
    /// Stage id from the pipeline file.
    pub id: String,
    /// Op name.
    pub op: String,
    /// "cpu" or "cuda".
    pub backend: String,
    /// Wall time on the host, milliseconds.
    pub host_ms: f64,
    /// Device time from CUDA events, milliseconds (CUDA stages only).
    pub device_ms: Option<f64>,
    /// Megapixels of the stage's output (0 for non-image values).
    pub megapixels: f64,
    /// True when `auto` placement fell back to the CPU.
    pub fell_back: bool,
    /// The fused segment this stage ran in (its members' ids joined by
    /// `+`); `host_ms` is then the stage's share of the segment's wall
    /// time, in proportion to the time its row kernel took. Absent for
    /// stages run on their own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fused: Option<String>,
}

/// All stage timings of one run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Timings {
    /// Version of this JSON layout.
    pub schema_version: crate::output::SchemaVersion,
    pub pipeline: String,
    pub source: String,
    /// Decode time, milliseconds (when the run decoded a file).
    pub decode_ms: Option<f64>,
    pub stages: Vec<StageTiming>,
    /// Why stages marked `fell_back` ran on the CPU (CUDA not available
    /// here, and why; or ops without a CUDA kernel). Absent when none did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Sum of stage host times, milliseconds.
    pub total_ms: f64,
}

impl Timings {
    /// A fixed-width table for terminals.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<14} {:<26} {:<7} {:>10} {:>10} {:>8}\n",
            "stage", "op", "backend", "host ms", "device ms", "MP"
        );
        if let Some(d) = self.decode_ms {
            s += &format!(
                "{:<14} {:<26} {:<7} {:>10.2} {:>10} {:>8}\n",
                "(decode)", "", "cpu", d, "-", ""
            );
        }
        for t in &self.stages {
            let dev = t
                .device_ms
                .map(|d| format!("{d:.3}"))
                .unwrap_or_else(|| "-".into());
            let backend = if t.fell_back {
                format!("{}*", t.backend)
            } else {
                t.backend.clone()
            };
            s += &format!(
                "{:<14} {:<26} {:<7} {:>10.2} {:>10} {:>8.2}\n",
                t.id, t.op, backend, t.host_ms, dev, t.megapixels
            );
        }
        s += &format!(
            "{:<14} {:<26} {:<7} {:>10.2}\n",
            "total", "", "", self.total_ms
        );
        if self.stages.iter().any(|t| t.fell_back) {
            s += &format!(
                "* fell back to the CPU: {}\n",
                self.fallback
                    .as_deref()
                    .unwrap_or("no CUDA device or no kernel for the op")
            );
        }
        s
    }
}
