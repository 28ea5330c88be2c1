//! The resume state of an import: how many leading lines of the file are done, for which
//! source, and how large the file was. Kept in a small JSON file, replaced whole after
//! each answered batch (written beside, then renamed over: a crash leaves the old state
//! or the new one, never half of one).
//!
//! "Done" is a prefix, one number, because batches are answered in order: every line up
//! to `lines_done` was accepted, or refused for a reason of its own (a bad amount, a bad
//! date) that sending it again would not change. Lines refused for a reason of the
//! deployment's (imports not allowed, a token that may not import) or that kept failing
//! (UNAVAILABLE after every retry) stop the prefix: running the import again sends them
//! again, along with the lines after them, whose repeats consumers drop by swipe id.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CliError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportState {
    /// The source of the swipe ids (`imp.<source>.<line>`).
    pub source: String,
    /// The file's size in bytes when the import started.
    pub file_size: u64,
    /// Every line up to this one (from 1) is done.
    pub lines_done: u64,
}

impl ImportState {
    /// The state at `path`; `None` if there is no file there (a first run).
    pub fn load(path: &Path) -> Result<Option<Self>, CliError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CliError::ReadState {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| CliError::ParseState {
                path: path.to_owned(),
                source,
            })
    }

    /// Where this run starts: the state at `path` if it is this import's, else a fresh
    /// one. Refuses a state of another source (the ids would not match what was sent) and
    /// a file smaller than the state saw (it was replaced or cut: the line numbers may
    /// now mean other purchases). A larger file is one that grew at its end (an export
    /// that was appended to): its new lines are imported.
    pub fn resume(
        previous: Option<Self>,
        source: &str,
        file_size: u64,
        path: &Path,
    ) -> Result<Self, CliError> {
        let Some(previous) = previous else {
            return Ok(Self {
                source: source.to_owned(),
                file_size,
                lines_done: 0,
            });
        };
        let mismatch = |message: String| CliError::StateMismatch {
            path: path.to_owned(),
            message,
        };
        if previous.source != source {
            return Err(mismatch(format!(
                "it is the import of source {:?}, this one is {source:?}; give the same \
                 --source to resume it, or another --state to start this one",
                previous.source
            )));
        }
        if file_size < previous.file_size {
            return Err(mismatch(format!(
                "the file had {} bytes and now has {file_size}: it was replaced or cut, so its \
                 line numbers may name other purchases; move the state away to import it \
                 from the start (lines already sent are sent again with the same ids)",
                previous.file_size
            )));
        }
        Ok(Self {
            file_size,
            ..previous
        })
    }

    /// Replaces the state at `path` with this one: a temporary file beside it, flushed
    /// to disk, renamed over it.
    pub fn save(&self, path: &Path) -> Result<(), CliError> {
        let failed = |source| CliError::WriteState {
            path: path.to_owned(),
            source,
        };
        let temporary = temporary_path(path);
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        let mut file = std::fs::File::create(&temporary).map_err(failed)?;
        file.write_all(text.as_bytes()).map_err(failed)?;
        file.sync_all().map_err(failed)?;
        drop(file);
        std::fs::rename(&temporary, path).map_err(failed)
    }
}

/// `<state>.tmp`, in the state's own directory so the rename stays on one file system.
fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_survives_a_save_and_is_checked_on_resume() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("s.import-state");
        assert_eq!(ImportState::load(&path).expect("no state"), None);
        let state = ImportState {
            source: "CDNOW_sample".into(),
            file_size: 1000,
            lines_done: 3000,
        };
        state.save(&path).expect("saved");
        assert!(!temporary_path(&path).exists());
        let loaded = ImportState::load(&path).expect("loads");
        assert_eq!(loaded.as_ref(), Some(&state));

        let grown =
            ImportState::resume(loaded.clone(), "CDNOW_sample", 1200, &path).expect("resumes");
        assert_eq!((grown.lines_done, grown.file_size), (3000, 1200));
        assert!(matches!(
            ImportState::resume(loaded.clone(), "other", 1000, &path),
            Err(CliError::StateMismatch { .. })
        ));
        assert!(matches!(
            ImportState::resume(loaded, "CDNOW_sample", 999, &path),
            Err(CliError::StateMismatch { .. })
        ));
        let fresh = ImportState::resume(None, "x", 5, &path).expect("fresh");
        assert_eq!(fresh.lines_done, 0);

        std::fs::write(&path, "not json").expect("written");
        assert!(matches!(
            ImportState::load(&path),
            Err(CliError::ParseState { .. })
        ));
    }
}
