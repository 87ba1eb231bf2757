//! Waiting for a job: plain `Engine::wait`, or a progress bar on a terminal.

use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;
use trialport_core::engine::Engine;
use trialport_core::error::Reason;
use trialport_core::job::{Job, JobState};
use trialport_core::{Error, Result};
use uuid::Uuid;

/// Waits until the job finishes or `timeout` passes; with `progress`, draws a bar of datasets, rows and bytes on
/// stderr as the engine reports them (one audited wait, however long).
///
/// # Errors
/// As [`Engine::wait`].
pub fn wait(
    engine: &Engine,
    credential: &str,
    id: Uuid,
    timeout: Option<Duration>,
    progress: bool,
) -> Result<Job> {
    if !progress {
        return engine.wait(credential, id, timeout);
    }
    // A spinner until the job says how many datasets it has: a bar of 0/0 drawn full says nothing true.
    let bar = ProgressBar::new(0);
    let spinner = ProgressStyle::with_template("{spinner} {prefix} [{elapsed_precise}] {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let counted = ProgressStyle::with_template(
        "{spinner} {prefix} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(spinner);
    bar.set_prefix(short_id(id));
    bar.enable_steady_tick(Duration::from_millis(100));
    let mut has_length = false;
    let result = engine
        .session(credential)
        .wait_with_progress(id, timeout, |job| {
            let p = job.progress;
            if p.datasets_total > 0 && !has_length {
                has_length = true;
                bar.set_style(counted.clone());
            }
            bar.set_length(u64::from(p.datasets_total));
            bar.set_position(u64::from(p.datasets_done));
            bar.set_message(format!(
                "{}  {} {}  {}",
                job.state,
                p.rows_written,
                if p.rows_written == 1 { "row" } else { "rows" },
                crate::output::bytes(p.bytes_written)
            ));
        });
    bar.finish_and_clear();
    result
}

fn short_id(id: Uuid) -> String {
    let s = id.to_string();
    format!("job {}", s.get(..8).unwrap_or(&s))
}

/// What a waited-for job means for the exit status.
#[derive(Debug)]
pub enum Finished {
    /// Succeeded (or succeeded and later expired).
    Ok,
    /// Still queued or running when the timeout passed.
    TimedOut,
    /// Failed or cancelled: the standard error to print.
    Err(Error),
}

/// Classifies a job returned by [`wait`]: a failed job yields its stored error stamped with the job's request id
/// and finish time; a cancelled one an EXP004 `job_cancelled`.
pub fn outcome(job: &Job) -> Finished {
    outcome_of(
        job.id,
        job.state,
        job.error.as_ref(),
        job.finished_at.unwrap_or(job.created_at),
    )
}

fn outcome_of(
    id: Uuid,
    state: JobState,
    error: Option<&serde_json::Value>,
    at: chrono::DateTime<chrono::Utc>,
) -> Finished {
    let request_id = format!("job_{}", id.simple());
    match state {
        JobState::Succeeded | JobState::Expired => Finished::Ok,
        JobState::Queued | JobState::Running => Finished::TimedOut,
        JobState::Failed => {
            let e = error
                .and_then(Error::from_object)
                .unwrap_or_else(|| Error::server(Reason::JobFailed, "the job failed"));
            Finished::Err(
                e.with_detail("job_id", id.to_string())
                    .with_request(&request_id, at),
            )
        }
        JobState::Cancelled => Finished::Err(
            Error::conflict(
                Reason::JobCancelled,
                "the job was cancelled before it finished",
            )
            .with_detail("job_id", id.to_string())
            .with_request(&request_id, at),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[test]
    fn a_failed_job_yields_its_stored_error() {
        let stored = Error::validation(Reason::ValueTooLong, "a value is too long")
            .with_field("AETERM")
            .to_object();
        let id = Uuid::now_v7();
        let now = chrono::Utc::now();
        let Finished::Err(e) = outcome_of(id, JobState::Failed, Some(&stored), now) else {
            panic!("not an error")
        };
        let v = e.render();
        assert_eq!(v["error"]["code"], "EXP002");
        assert_eq!(v["error"]["details"]["reason"], "value_too_long");
        assert_eq!(v["error"]["field"], "AETERM");
        assert_eq!(
            v["error"]["request_id"],
            format!("job_{}", id.simple()).as_str()
        );
        assert!(matches!(
            outcome_of(id, JobState::Succeeded, None, now),
            Finished::Ok
        ));
        assert!(matches!(
            outcome_of(id, JobState::Running, None, now),
            Finished::TimedOut
        ));
        let Finished::Err(e) = outcome_of(id, JobState::Cancelled, None, now) else {
            panic!("not an error")
        };
        assert_eq!(e.code().as_str(), "EXP004");
    }
}
