//! The model worker: the one thread that owns the model. Requests that arrive together and
//! share sampling settings form one batch; every running batch advances one token in turn,
//! so a new short request starts at once and finishes while a long one is still running.
//! Rows whose client has gone are stopped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

use polyepo_engine::model::{Llama, TextTokenizer};
use polyepo_engine::sample::{BatchSampler, Generation, SamplingParams, TokenConstraint};

use super::ServeLimits;

/// One finished choice: the sampler's generation (text, finish reason, tokens, log-probs).
pub type Choice = Generation;

/// What the worker tells a request's handler.
pub enum JobEvent {
    /// More text of choice `index` (streaming requests only).
    Delta {
        /// The choice.
        index: usize,
        /// Text that follows what was sent before.
        text: String,
    },
    /// The request is done: its choices, or why it failed.
    Done(Result<Vec<Choice>, String>),
}

/// A generation request: prompt tokens, settings, and where the answer goes.
pub struct Job {
    /// Prompt token ids, one list per prompt.
    pub prompts: Vec<Vec<u32>>,
    /// Choices to generate per prompt.
    pub n: usize,
    /// One token constraint per row (prompt-major), when the request has a grammar.
    pub constraints: Option<Vec<Box<dyn TokenConstraint>>>,
    /// Sampling settings.
    pub params: SamplingParams,
    /// Whether text is sent as it is generated.
    pub stream: bool,
    /// Where events go; a failed send means the handler has gone.
    pub events: tokio::sync::mpsc::UnboundedSender<JobEvent>,
    /// Set by the handler when its client has gone: the job's rows stop.
    pub cancelled: Arc<AtomicBool>,
}

/// A job inside a running batch.
struct Member {
    job: Job,
    first_row: usize,
    /// Text already streamed, per choice.
    sent: Vec<String>,
}

impl Job {
    /// Rows it generates: `n` per prompt.
    fn rows(&self) -> usize {
        self.prompts.len() * self.n
    }
}

impl Member {
    fn rows(&self) -> std::ops::Range<usize> {
        self.first_row..self.first_row + self.job.rows()
    }

    fn gone(&self) -> bool {
        self.job.cancelled.load(Ordering::Relaxed)
    }
}

/// A batch being generated.
struct Running<'t> {
    sampler: BatchSampler<'t>,
    members: Vec<Member>,
    /// The batch's stop strings (streamed text is held back before them).
    stops: Vec<String>,
    error: Option<String>,
}

/// The part of `text` that can be streamed now: cut before the first stop string, without
/// a tail that may still grow into a stop string, and without a trailing replacement
/// character (a UTF-8 sequence split across tokens).
fn streamable<'a>(text: &'a str, stops: &[String]) -> &'a str {
    let cut = stops
        .iter()
        .filter_map(|s| text.find(s.as_str()))
        .min()
        .unwrap_or(text.len());
    let text = &text[..cut];
    let hold = stops
        .iter()
        .filter_map(|s| {
            (1..s.len())
                .rev()
                .find(|&k| s.is_char_boundary(k) && text.ends_with(&s[..k]))
        })
        .max()
        .unwrap_or(0);
    text[..text.len() - hold].trim_end_matches('\u{FFFD}')
}

impl Running<'_> {
    /// Stops the rows of jobs whose client left, then generates one token.
    fn advance(&mut self, tokenizer: &TextTokenizer) {
        for m in &self.members {
            if m.gone() {
                for row in m.rows() {
                    self.sampler.cancel(row);
                }
            }
        }
        if self.sampler.is_finished() {
            return;
        }
        if let Err(e) = self.sampler.step() {
            self.error = Some(e.to_string());
            return;
        }
        for m in self.members.iter_mut().filter(|m| m.job.stream) {
            for (index, row) in m.rows().enumerate() {
                let Ok(text) = tokenizer.decode(self.sampler.tokens(row)) else {
                    continue;
                };
                let ready = streamable(&text, &self.stops);
                if let Some(delta) = ready.strip_prefix(m.sent[index].as_str())
                    && !delta.is_empty()
                {
                    let event = JobEvent::Delta {
                        index,
                        text: delta.to_owned(),
                    };
                    if m.job.events.send(event).is_err() {
                        m.job.cancelled.store(true, Ordering::Relaxed);
                    }
                    m.sent[index] = ready.to_owned();
                }
            }
        }
    }

    fn done(&self) -> bool {
        self.error.is_some() || self.sampler.is_finished()
    }

    /// Sends every job its choices (streaming jobs first get the text not yet sent).
    fn reply(self) {
        let Running {
            sampler,
            members,
            error,
            ..
        } = self;
        let generations = match error {
            Some(e) => Err(e),
            None => sampler.finish().map_err(|e| e.to_string()),
        };
        let mut generations = match generations {
            Ok(g) => g.into_iter(),
            Err(e) => {
                for m in members {
                    let _ = m.job.events.send(JobEvent::Done(Err(e.clone())));
                }
                return;
            }
        };
        for m in members {
            let mine: Vec<Choice> = generations.by_ref().take(m.job.rows()).collect();
            if m.job.stream {
                for (index, c) in mine.iter().enumerate() {
                    if let Some(rest) = c.text.strip_prefix(m.sent[index].as_str())
                        && !rest.is_empty()
                    {
                        let _ = m.job.events.send(JobEvent::Delta {
                            index,
                            text: rest.to_owned(),
                        });
                    }
                }
            }
            let _ = m.job.events.send(JobEvent::Done(Ok(mine)));
        }
    }
}

/// Groups jobs with equal settings (the seed aside) into batches of at most `max_batch`
/// rows; the batch samples with its first job's seed.
fn batches(jobs: Vec<Job>, max_batch: usize) -> Vec<Vec<Job>> {
    let mut groups: BTreeMap<String, Vec<Vec<Job>>> = BTreeMap::new();
    for job in jobs {
        let key = format!(
            "{:?}",
            SamplingParams {
                seed: 0,
                ..job.params.clone()
            }
        );
        let group = groups.entry(key).or_default();
        let rows = |b: &Vec<Job>| b.iter().map(Job::rows).sum::<usize>();
        match group.last_mut() {
            Some(b) if rows(b) + job.rows() <= max_batch => b.push(job),
            _ => group.push(vec![job]),
        }
    }
    groups.into_values().flatten().collect()
}

/// Starts a batch: prefill now; a failure is every member's answer.
fn start<'t>(model: &Llama, tokenizer: &'t TextTokenizer, jobs: Vec<Job>) -> Option<Running<'t>> {
    let jobs: Vec<Job> = jobs
        .into_iter()
        .filter(|j| !j.cancelled.load(Ordering::Relaxed))
        .collect();
    let first = jobs.first()?;
    let params = first.params.clone();
    let rows: Vec<Vec<u32>> = jobs
        .iter()
        .flat_map(|j| {
            j.prompts
                .iter()
                .flat_map(|p| std::iter::repeat_n(p.clone(), j.n))
        })
        .collect();
    match BatchSampler::new(model, tokenizer, &rows, &params) {
        Ok(mut sampler) => {
            let mut first_row = 0;
            let members = jobs
                .into_iter()
                .map(|mut job| {
                    for (i, c) in job.constraints.take().into_iter().flatten().enumerate() {
                        sampler.constrain(first_row + i, c);
                    }
                    let m = Member {
                        first_row,
                        sent: vec![String::new(); job.rows()],
                        job,
                    };
                    first_row += m.job.rows();
                    m
                })
                .collect();
            Some(Running {
                sampler,
                members,
                stops: params.stop_strings,
                error: None,
            })
        }
        Err(e) => {
            for j in jobs {
                let _ = j.events.send(JobEvent::Done(Err(e.to_string())));
            }
            None
        }
    }
}

/// Runs until the job channel closes and the last batch is done; `busy_rows` tells how
/// many rows are being generated.
pub fn run(
    model: Llama,
    tokenizer: TextTokenizer,
    jobs: Receiver<Job>,
    limits: ServeLimits,
    busy_rows: Arc<AtomicUsize>,
) {
    let mut running: Vec<Running<'_>> = Vec::new();
    let mut open = true;
    loop {
        // Admit new jobs; block only when there is nothing to generate.
        let mut pending = Vec::new();
        if running.is_empty() {
            if !open {
                return;
            }
            match jobs.recv() {
                Ok(job) => pending.push(job),
                Err(_) => return,
            }
            // Requests arriving together are batched together.
            while pending.iter().map(Job::rows).sum::<usize>() < limits.max_batch {
                match jobs.recv_timeout(Duration::from_millis(2)) {
                    Ok(job) => pending.push(job),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
        } else {
            loop {
                match jobs.try_recv() {
                    Ok(job) => pending.push(job),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
        }
        for batch in batches(pending, limits.max_batch) {
            running.extend(start(&model, &tokenizer, batch));
        }
        // One token for every running batch, in turn.
        for batch in &mut running {
            batch.advance(&tokenizer);
        }
        let (done, still): (Vec<_>, Vec<_>) = running.into_iter().partition(Running::done);
        for batch in done {
            batch.reply();
        }
        running = still;
        busy_rows.store(
            running.iter().map(|b| b.sampler.rows()).sum(),
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::streamable;

    #[test]
    fn streamable_text_holds_back_what_may_become_a_stop_string() {
        let stops = vec!["\n\n".to_owned(), "END".to_owned()];
        assert_eq!(streamable("hello", &stops), "hello");
        assert_eq!(streamable("hello\n", &stops), "hello");
        assert_eq!(streamable("hello EN", &stops), "hello ");
        assert_eq!(streamable("hello END more", &stops), "hello ");
        assert_eq!(streamable("a\n\nb", &stops), "a");
        assert_eq!(streamable("caf\u{FFFD}", &[]), "caf");
    }
}
