//! The recorder's life cycle as the page sees it.

use std::fmt;

/// Where a live recording is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecorderState {
    /// Constructed, `start()` not called yet.
    Idle,
    /// `start()` called: creating the live and starting MediaRecorder.
    Starting,
    /// MediaRecorder is producing chunks.
    Recording,
    /// Recording is paused; the clock does not run.
    Paused,
    /// `stop()` called: flushing, uploading the rest, stopping the live.
    Stopping,
    /// The server confirmed the stop; the recording is safe.
    Saved,
    /// A fatal error ended the session.
    Failed,
}

impl RecorderState {
    /// The string the JS side sees (`RecorderState` in the TypeScript types).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Starting => "starting",
            Self::Recording => "recording",
            Self::Paused => "paused",
            Self::Stopping => "stopping",
            Self::Saved => "saved",
            Self::Failed => "failed",
        }
    }

    /// True once nothing more will happen (saved or failed).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Saved | Self::Failed)
    }

    /// True while MediaRecorder is running (recording or paused): the window in which
    /// `pause`, `resume` and `stop` make sense.
    pub fn is_capturing(self) -> bool {
        matches!(self, Self::Recording | Self::Paused)
    }
}

impl fmt::Display for RecorderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_render_as_the_typescript_union() {
        let all = [
            RecorderState::Idle,
            RecorderState::Starting,
            RecorderState::Recording,
            RecorderState::Paused,
            RecorderState::Stopping,
            RecorderState::Saved,
            RecorderState::Failed,
        ];
        let names: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "idle",
                "starting",
                "recording",
                "paused",
                "stopping",
                "saved",
                "failed"
            ]
        );
        assert!(all.iter().filter(|s| s.is_final()).eq([
            RecorderState::Saved,
            RecorderState::Failed
        ]
        .iter()));
        assert!(all.iter().filter(|s| s.is_capturing()).eq([
            RecorderState::Recording,
            RecorderState::Paused
        ]
        .iter()));
    }
}
