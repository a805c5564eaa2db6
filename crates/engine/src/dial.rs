//! The `<Dial>` race: which of the legs rung at once wins, what happens to the others, when the
//! dial is over and with which `DialCallStatus`.
//!
//! The runtime rings every leg, tells the race what each does (answered, failed, done with its
//! `sendDigits` and whisper, hung up) and carries out what the race decides ([`DialAction`]):
//! screen an answered leg, bridge the winner, drop the others with the status their call record
//! ends with, and finally report the dial's end. Sans-IO like [`crate::Call`]: instants are
//! passed in, the `timeLimit` is a deadline from [`DialRace::poll_timeout`].
//!
//! # Rules (Twilio's, and where it is silent, the choices)
//! - The first leg to *reach the bridge* wins, not the first to answer: a leg that answers is
//!   screened (its `sendDigits`, then its whisper `url`) and may still lose to a faster one, or
//!   refuse the call in its whisper. A leg that answers once a winner exists is refused (BYE).
//! - When a leg wins, every other leg is dropped: `completed` if it had answered (it was being
//!   screened), `canceled` if it still rang.
//! - The dial ends when the bridged leg hangs up, the caller hangs up, `*` is pressed with
//!   `hangupOnStar`, `timeLimit` passes (counted from the bridge), a live update cancels it, or
//!   no leg is left to answer. Its status: `completed` once bridged; else `canceled` when the
//!   caller or an update ended it; else, from the legs' own ends, `no-answer` if any rang out,
//!   else `busy` if any was busy, else `canceled` if one was canceled, else `failed`.
//! - The reported `DialCallSid` is the winner's, else the first leg's (Twilio reports the leg
//!   that was tried).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use model::CallStatus;

use crate::DialCallStatus;

/// Why a dial ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCause {
    /// The bridged leg hung up.
    LegHungUp,
    /// The caller hung up (or its call is being ended).
    ParentGone,
    /// `hangupOnStar`.
    Star,
    TimeLimit,
    /// The engine cancelled the dial (a live update).
    Cancelled,
    /// Every leg ended without a bridge.
    NoLegLeft,
}

/// Where one leg stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegState {
    Ringing,
    /// Answered: its digits are sent, its whisper runs.
    Screening,
    Bridged,
    Ended,
}

/// What the runtime must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialAction {
    /// Bridge this leg to the caller (stop the ringback).
    Bridge { leg: usize },
    /// Hang this leg up the way its state needs (CANCEL while ringing, BYE once answered) and
    /// end its call record with `status`.
    Drop { leg: usize, status: CallStatus },
    /// The dial is over: undo the bridge, report `DialEnded`. Always the last action, once.
    Ended {
        status: DialCallStatus,
        cause: EndCause,
        /// The leg to report as `DialCallSid`.
        reported_leg: Option<usize>,
        /// How long the bridge lasted (zero without one).
        bridged_for: Duration,
    },
}

#[derive(Debug, Clone, Copy)]
struct Leg {
    state: LegState,
    answered: bool,
    /// How the leg ended when it did not win (for the unbridged status).
    outcome: Option<CallStatus>,
}

/// One dial's race. See the module docs.
#[derive(Debug)]
pub struct DialRace {
    legs: Vec<Leg>,
    winner: Option<usize>,
    bridged_at: Option<Instant>,
    time_limit: Duration,
    hangup_on_star: bool,
    ended: bool,
    actions: VecDeque<DialAction>,
}

impl DialRace {
    /// A race of `legs` legs, all ringing. A dial with no leg at all (every target failed before
    /// ringing) ends at once.
    pub fn new(now: Instant, legs: usize, time_limit: Duration, hangup_on_star: bool) -> DialRace {
        let mut race = DialRace {
            legs: vec![
                Leg {
                    state: LegState::Ringing,
                    answered: false,
                    outcome: None,
                };
                legs
            ],
            winner: None,
            bridged_at: None,
            time_limit,
            hangup_on_star,
            ended: false,
            actions: VecDeque::new(),
        };
        race.check_legs_left(now);
        race
    }

    /// A leg that could not even be placed (no phone registered, no port): it ends at once
    /// with `outcome` for the dial's status and `record` for its own call record.
    pub fn handle_leg_not_placed(
        &mut self,
        now: Instant,
        leg: usize,
        outcome: CallStatus,
        record: CallStatus,
    ) {
        if let Some(l) = self.live_leg(leg) {
            l.outcome = Some(outcome);
            l.state = LegState::Ended;
            self.actions.push_back(DialAction::Drop {
                leg,
                status: record,
            });
            self.check_legs_left(now);
        }
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    pub fn winner(&self) -> Option<usize> {
        self.winner
    }

    pub fn leg_state(&self, leg: usize) -> Option<LegState> {
        self.legs.get(leg).map(|l| l.state)
    }

    pub fn poll_action(&mut self) -> Option<DialAction> {
        self.actions.pop_front()
    }

    /// The `timeLimit` deadline, once bridged.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        self.bridged_at.map(|t| t + self.time_limit)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|t| t <= now) {
            self.end(now, EndCause::TimeLimit);
        }
    }

    /// The leg did not answer (busy, no answer, failed, canceled...).
    pub fn handle_leg_failed(&mut self, now: Instant, leg: usize, status: CallStatus) {
        let Some(l) = self.live_leg(leg) else { return };
        if l.state != LegState::Ringing {
            return;
        }
        l.outcome = Some(status);
        self.drop_leg(leg, status);
        self.check_legs_left(now);
    }

    /// The leg answered. True: screen it (send its digits, run its whisper, then report
    /// [`DialRace::handle_leg_ready`] or [`DialRace::handle_leg_refused`]); false: it answered
    /// too late (someone was bridged, or it was given up), hang it up.
    pub fn handle_leg_answered(&mut self, _now: Instant, leg: usize) -> bool {
        let winner = self.winner;
        match self.live_leg(leg) {
            Some(l) if l.state == LegState::Ringing && winner.is_none() => {
                l.state = LegState::Screening;
                l.answered = true;
                true
            }
            _ => false,
        }
    }

    /// The leg's digits and whisper are done: it wins if nobody has yet.
    pub fn handle_leg_ready(&mut self, now: Instant, leg: usize) {
        if self.ended || self.winner.is_some() {
            return;
        }
        let Some(l) = self.live_leg(leg) else { return };
        if l.state != LegState::Screening {
            return;
        }
        l.state = LegState::Bridged;
        self.winner = Some(leg);
        self.bridged_at = Some(now);
        for other in 0..self.legs.len() {
            if other != leg {
                let status = self.dropped_status(other);
                self.drop_leg(other, status);
            }
        }
        self.actions.push_back(DialAction::Bridge { leg });
    }

    /// The leg's whisper refused the call (`<Hangup>` or `<Reject>`).
    pub fn handle_leg_refused(&mut self, now: Instant, leg: usize) {
        let Some(l) = self.live_leg(leg) else { return };
        if l.state != LegState::Screening {
            return;
        }
        l.outcome = Some(CallStatus::NoAnswer);
        self.drop_leg(leg, CallStatus::Completed);
        self.check_legs_left(now);
    }

    /// The leg's far end hung up (BYE).
    pub fn handle_leg_hung_up(&mut self, now: Instant, leg: usize) {
        if self.winner == Some(leg) {
            return self.end(now, EndCause::LegHungUp);
        }
        let Some(l) = self.live_leg(leg) else { return };
        l.outcome = Some(CallStatus::NoAnswer);
        self.drop_leg(leg, CallStatus::Completed);
        self.check_legs_left(now);
    }

    /// The leg's call was ended through the API.
    pub fn handle_leg_ended_by_api(&mut self, now: Instant, leg: usize) {
        if self.winner == Some(leg) {
            return self.end(now, EndCause::LegHungUp);
        }
        let status = self.dropped_status(leg);
        if self.live_leg(leg).is_some() {
            self.drop_leg(leg, status);
            self.check_legs_left(now);
        }
    }

    /// A caller's DTMF digit during the dial; true when `*` ended the bridge (`hangupOnStar`).
    pub fn handle_digit(&mut self, now: Instant, digit: char) -> bool {
        if digit == '*' && self.hangup_on_star && self.winner.is_some() && !self.ended {
            self.end(now, EndCause::Star);
            return true;
        }
        false
    }

    /// Ends the dial now (caller gone, live update, `timeLimit`, ...).
    pub fn end(&mut self, now: Instant, cause: EndCause) {
        if self.ended {
            return;
        }
        self.ended = true;
        let status = match self.winner {
            Some(_) => DialCallStatus::Completed,
            None if matches!(cause, EndCause::ParentGone | EndCause::Cancelled) => {
                DialCallStatus::Canceled
            }
            None => self.unbridged_status(),
        };
        for leg in 0..self.legs.len() {
            let status = self.dropped_status(leg);
            self.drop_leg(leg, status);
        }
        let bridged_for = self
            .bridged_at
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let reported_leg = self.winner.or((!self.legs.is_empty()).then_some(0));
        self.actions.push_back(DialAction::Ended {
            status,
            cause,
            reported_leg,
            bridged_for,
        });
    }

    fn live_leg(&mut self, leg: usize) -> Option<&mut Leg> {
        if self.ended {
            return None;
        }
        self.legs
            .get_mut(leg)
            .filter(|l| l.state != LegState::Ended)
    }

    /// The status a given-up leg's call record ends with.
    fn dropped_status(&self, leg: usize) -> CallStatus {
        match self.legs.get(leg) {
            Some(l) if l.answered => CallStatus::Completed,
            _ => CallStatus::Canceled,
        }
    }

    fn drop_leg(&mut self, leg: usize, status: CallStatus) {
        let Some(l) = self.legs.get_mut(leg) else {
            return;
        };
        if l.state == LegState::Ended {
            return;
        }
        l.state = LegState::Ended;
        self.actions.push_back(DialAction::Drop { leg, status });
    }

    fn check_legs_left(&mut self, now: Instant) {
        if !self.ended
            && self.winner.is_none()
            && self.legs.iter().all(|l| l.state == LegState::Ended)
        {
            self.end(now, EndCause::NoLegLeft);
        }
    }

    /// Nobody was bridged: a leg left ringing until the timeout makes it `no-answer`, else a
    /// busy leg `busy`, else a canceled one `canceled`, else `failed`.
    fn unbridged_status(&self) -> DialCallStatus {
        let outcomes: Vec<CallStatus> = self.legs.iter().filter_map(|l| l.outcome).collect();
        if outcomes.contains(&CallStatus::NoAnswer) {
            DialCallStatus::NoAnswer
        } else if outcomes.contains(&CallStatus::Busy) {
            DialCallStatus::Busy
        } else if outcomes.contains(&CallStatus::Canceled) {
            DialCallStatus::Canceled
        } else {
            DialCallStatus::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(race: &mut DialRace) -> Vec<DialAction> {
        std::iter::from_fn(|| race.poll_action()).collect()
    }

    fn ended(
        actions: &[DialAction],
    ) -> Option<(DialCallStatus, EndCause, Option<usize>, Duration)> {
        actions.iter().find_map(|a| match a {
            DialAction::Ended {
                status,
                cause,
                reported_leg,
                bridged_for,
            } => Some((*status, *cause, *reported_leg, *bridged_for)),
            _ => None,
        })
    }

    const LIMIT: Duration = Duration::from_secs(14400);

    #[test]
    fn the_first_leg_to_reach_the_bridge_wins_and_the_others_are_dropped() {
        let t0 = Instant::now();
        let mut race = DialRace::new(t0, 3, LIMIT, false);
        assert!(race.handle_leg_answered(t0, 0));
        assert!(race.handle_leg_answered(t0 + Duration::from_millis(100), 1));
        assert!(drain(&mut race).is_empty());
        // Leg 1 has no whisper and is ready first: it wins over the earlier answer.
        race.handle_leg_ready(t0 + Duration::from_millis(150), 1);
        let actions = drain(&mut race);
        assert_eq!(
            actions,
            vec![
                DialAction::Drop {
                    leg: 0,
                    status: CallStatus::Completed
                },
                DialAction::Drop {
                    leg: 2,
                    status: CallStatus::Canceled
                },
                DialAction::Bridge { leg: 1 },
            ]
        );
        assert_eq!(race.winner(), Some(1));
        // Leg 0's whisper finishing later changes nothing; a late answer is refused.
        race.handle_leg_ready(t0 + Duration::from_secs(1), 0);
        assert!(
            !race.handle_leg_answered(t0 + Duration::from_secs(1), 2),
            "too late"
        );
        assert!(drain(&mut race).is_empty());
        // The winner hangs up after 30 s: completed, reported with the bridge's length.
        race.handle_leg_hung_up(t0 + Duration::from_millis(30_150), 1);
        let actions = drain(&mut race);
        assert_eq!(
            ended(&actions),
            Some((
                DialCallStatus::Completed,
                EndCause::LegHungUp,
                Some(1),
                Duration::from_secs(30)
            ))
        );
    }

    #[test]
    fn unbridged_status_comes_from_how_the_legs_ended() {
        let t0 = Instant::now();
        for (outcomes, expected) in [
            (
                vec![CallStatus::Busy, CallStatus::NoAnswer],
                DialCallStatus::NoAnswer,
            ),
            (
                vec![CallStatus::Busy, CallStatus::Failed],
                DialCallStatus::Busy,
            ),
            (
                vec![CallStatus::Failed, CallStatus::Canceled],
                DialCallStatus::Canceled,
            ),
            (vec![CallStatus::Failed], DialCallStatus::Failed),
        ] {
            let mut race = DialRace::new(t0, outcomes.len(), LIMIT, false);
            for (i, status) in outcomes.iter().enumerate() {
                race.handle_leg_failed(t0, i, *status);
            }
            let actions = drain(&mut race);
            let (status, cause, reported, bridged) = ended(&actions).expect("ended");
            assert_eq!(
                (status, cause),
                (expected, EndCause::NoLegLeft),
                "{outcomes:?}"
            );
            assert_eq!((reported, bridged), (Some(0), Duration::ZERO));
        }
    }

    #[test]
    fn a_whisper_that_refuses_counts_as_no_answer() {
        let t0 = Instant::now();
        let mut race = DialRace::new(t0, 1, LIMIT, false);
        assert!(race.handle_leg_answered(t0, 0));
        race.handle_leg_refused(t0, 0);
        let actions = drain(&mut race);
        assert!(actions.contains(&DialAction::Drop {
            leg: 0,
            status: CallStatus::Completed
        }));
        assert_eq!(ended(&actions).map(|e| e.0), Some(DialCallStatus::NoAnswer));
    }

    #[test]
    fn caller_gone_or_update_before_the_bridge_is_canceled_and_drops_all() {
        let t0 = Instant::now();
        for cause in [EndCause::ParentGone, EndCause::Cancelled] {
            let mut race = DialRace::new(t0, 2, LIMIT, false);
            assert!(race.handle_leg_answered(t0, 1));
            drain(&mut race);
            race.end(t0, cause);
            let actions = drain(&mut race);
            assert_eq!(
                &actions[..2],
                &[
                    DialAction::Drop {
                        leg: 0,
                        status: CallStatus::Canceled
                    },
                    DialAction::Drop {
                        leg: 1,
                        status: CallStatus::Completed
                    },
                ]
            );
            assert_eq!(ended(&actions).map(|e| e.0), Some(DialCallStatus::Canceled));
            // Ended once: later reports change nothing.
            race.handle_leg_hung_up(t0, 1);
            race.end(t0, EndCause::NoLegLeft);
            assert!(drain(&mut race).is_empty());
        }
    }

    #[test]
    fn time_limit_runs_from_the_bridge_and_star_ends_only_with_hangup_on_star() {
        let t0 = Instant::now();
        let mut race = DialRace::new(t0, 1, Duration::from_secs(60), true);
        assert_eq!(race.poll_timeout(), None, "no limit before the bridge");
        assert!(!race.handle_digit(t0, '*'), "no bridge yet");
        assert!(race.handle_leg_answered(t0 + Duration::from_secs(5), 0));
        race.handle_leg_ready(t0 + Duration::from_secs(5), 0);
        drain(&mut race);
        assert_eq!(race.poll_timeout(), Some(t0 + Duration::from_secs(65)));
        race.handle_timeout(t0 + Duration::from_secs(64));
        assert!(drain(&mut race).is_empty());
        race.handle_timeout(t0 + Duration::from_secs(65));
        let actions = drain(&mut race);
        assert_eq!(
            ended(&actions),
            Some((
                DialCallStatus::Completed,
                EndCause::TimeLimit,
                Some(0),
                Duration::from_secs(60)
            ))
        );

        let mut race = DialRace::new(t0, 1, LIMIT, true);
        assert!(race.handle_leg_answered(t0, 0));
        race.handle_leg_ready(t0, 0);
        drain(&mut race);
        assert!(!race.handle_digit(t0, '1'));
        assert!(race.handle_digit(t0 + Duration::from_secs(3), '*'));
        assert_eq!(ended(&drain(&mut race)).map(|e| e.1), Some(EndCause::Star));

        let mut race = DialRace::new(t0, 1, LIMIT, false);
        assert!(race.handle_leg_answered(t0, 0));
        race.handle_leg_ready(t0, 0);
        drain(&mut race);
        assert!(
            !race.handle_digit(t0, '*'),
            "without hangupOnStar a star is just a digit"
        );
    }

    #[test]
    fn legs_that_could_not_be_placed_end_the_dial_when_none_is_left() {
        let t0 = Instant::now();
        let mut race = DialRace::new(t0, 2, LIMIT, false);
        race.handle_leg_not_placed(t0, 0, CallStatus::NoAnswer, CallStatus::Failed);
        assert!(!race.is_ended());
        race.handle_leg_not_placed(t0, 1, CallStatus::Failed, CallStatus::Failed);
        let actions = drain(&mut race);
        assert_eq!(ended(&actions).map(|e| e.0), Some(DialCallStatus::NoAnswer));
        let empty = DialRace::new(t0, 0, LIMIT, false);
        assert!(empty.is_ended(), "a dial without legs is over at once");
    }

    #[test]
    fn a_non_winning_leg_hanging_up_or_ended_by_api_is_dropped() {
        let t0 = Instant::now();
        let mut race = DialRace::new(t0, 2, LIMIT, false);
        assert!(race.handle_leg_answered(t0, 0));
        drain(&mut race);
        race.handle_leg_hung_up(t0, 0);
        assert_eq!(
            drain(&mut race),
            vec![DialAction::Drop {
                leg: 0,
                status: CallStatus::Completed
            }]
        );
        race.handle_leg_ended_by_api(t0, 1);
        let actions = drain(&mut race);
        assert_eq!(
            actions[0],
            DialAction::Drop {
                leg: 1,
                status: CallStatus::Canceled
            }
        );
        assert_eq!(ended(&actions).map(|e| e.0), Some(DialCallStatus::NoAnswer));
    }
}
