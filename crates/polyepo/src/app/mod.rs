//! The applications on top of the trainer: held-out evaluation, studies (algorithm comparisons),
//! reports and charts, and the OpenAI-compatible server.

pub mod eval;
pub mod plot;
pub mod report;
pub mod serve;
pub mod study;
