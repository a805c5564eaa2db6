//! The call state machine (interim: webhook fetch and hangup only; the verb interpreter follows).

use std::collections::VecDeque;
use std::time::Instant;

use model::CallStatus;

use crate::{CallConfig, Input, Output};

/// One call's interpreter.
#[derive(Debug)]
pub struct Call {
    config: CallConfig,
    status: CallStatus,
    outputs: VecDeque<Output>,
    answered_at: Option<Instant>,
    finished: bool,
}

impl Call {
    pub fn new(_now: Instant, config: CallConfig, _rng_seed: u64) -> Call {
        let mut outputs = VecDeque::new();
        outputs.push_back(Output::FetchWebhook {
            request_id: 1,
            url: config.voice_url.clone(),
            method: config.voice_method,
            params: Vec::new(),
        });
        Call { config, status: CallStatus::Ringing, outputs, answered_at: None, finished: false }
    }

    pub fn handle_input(&mut self, now: Instant, input: Input) {
        if let Input::RemoteHangup = input {
            if !self.finished {
                self.finished = true;
                self.status = CallStatus::Canceled;
                self.outputs.push_back(Output::Finished {
                    status: self.status,
                    answered_at: self.answered_at,
                    ended_at: now,
                });
            }
        }
    }

    pub fn handle_timeout(&mut self, _now: Instant) {}

    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn status(&self) -> CallStatus {
        self.status
    }

    pub fn config(&self) -> &CallConfig {
        &self.config
    }
}
