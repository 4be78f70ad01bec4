//! The rooms of lives in progress, in memory: who is watching, the events they receive, how
//! far each recording is committed; and the bus that keeps the rooms of several nodes in step.

pub mod bus;
pub mod hub;
