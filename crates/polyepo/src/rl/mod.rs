//! The reinforcement-learning layer: the training configuration, tasks and their verifiers,
//! strategy judges, the PPO loss, and the on-policy loop that ties them to the engine.

pub mod advantage_request;
pub mod config;
pub mod judge;
pub mod loss;
pub mod tasks;
pub mod train;
