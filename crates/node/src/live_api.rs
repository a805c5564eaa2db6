//! The REST API's live half of queues and conferences: what `api` asks through its hooks,
//! answered from the rooms' tasks and the queue runtime.

use std::sync::Arc;
use std::time::Instant;

use api::{
    ConferenceTarget, ConferenceUpdate, CreateParticipant, HookError, MemberKey, MemberUpdate,
    ParticipantKey, ParticipantUpdate, QueueStats,
};
use chrono::{DateTime, Utc};
use engine::conference::{ConferenceError, Music, Participant, ParticipantId};
use model::{
    AccountSid, ConferenceRecord, ConferenceSid, MemberRecord, ParticipantRecord,
    ParticipantStatus, QueueSid,
};

use crate::call::http_method;
use crate::queues::MemberView;
use crate::Shared;

/// An instant of this process as wall-clock time.
fn wall(at: Instant) -> DateTime<Utc> {
    let ago = Instant::now().saturating_duration_since(at);
    Utc::now() - chrono::Duration::from_std(ago).unwrap_or_else(|_| chrono::Duration::zero())
}

fn key(key: ParticipantKey) -> ParticipantId {
    match key {
        ParticipantKey::Call(sid) => ParticipantId::Call(sid),
        ParticipantKey::Label(label) => ParticipantId::Label(label),
    }
}

fn refused(e: ConferenceError) -> HookError {
    match e {
        ConferenceError::UnknownParticipant | ConferenceError::Ended => HookError::NotFound,
        other => HookError::Rejected {
            code: other.twilio_code().unwrap_or(20001),
            message: other.to_string(),
        },
    }
}

fn participant_record(
    account: AccountSid,
    conference: ConferenceSid,
    p: &Participant,
) -> ParticipantRecord {
    let status = p.status;
    let created = wall(p.added_at);
    ParticipantRecord {
        account_sid: account,
        conference_sid: conference,
        call_sid: p.call_sid,
        label: p.label.clone(),
        muted: p.muted,
        hold: p.hold,
        coaching: p.coaching,
        call_sid_to_coach: p.call_sid_to_coach,
        end_conference_on_exit: p.end_conference_on_exit,
        start_conference_on_enter: p.start_conference_on_enter,
        status,
        date_created: created,
        date_updated: Utc::now(),
    }
}

fn member_record(queue: QueueSid, m: &MemberView) -> MemberRecord {
    MemberRecord {
        call_sid: m.call_sid,
        queue_sid: queue,
        position: u32::try_from(m.position).unwrap_or(u32::MAX),
        wait_time: u32::try_from(m.wait_time.as_secs()).unwrap_or(u32::MAX),
        date_enqueued: wall(m.enqueued_at),
    }
}

fn music((url, method): (String, String)) -> Music {
    Music {
        url,
        method: http_method(&method),
    }
}

pub(crate) fn queue_stats(shared: &Shared, account: AccountSid, queue: QueueSid) -> QueueStats {
    match shared.queues.stats(account, queue) {
        Some((size, average)) => QueueStats {
            current_size: u32::try_from(size).unwrap_or(u32::MAX),
            average_wait_time: u32::try_from(average.as_secs()).unwrap_or(u32::MAX),
        },
        None => QueueStats::default(),
    }
}

pub(crate) fn queue_members(
    shared: &Shared,
    account: AccountSid,
    queue: QueueSid,
) -> Vec<MemberRecord> {
    shared
        .queues
        .members(account, queue)
        .unwrap_or_default()
        .iter()
        .map(|m| member_record(queue, m))
        .collect()
}

pub(crate) fn update_member(
    shared: &Shared,
    account: AccountSid,
    queue: QueueSid,
    member: MemberKey,
    update: MemberUpdate,
) -> Result<MemberRecord, HookError> {
    let call = match member {
        MemberKey::Front => None,
        MemberKey::Call(sid) => Some(sid),
    };
    let view = shared
        .queues
        .redirect_member(
            account,
            queue,
            call,
            update.url,
            http_method(&update.method),
        )
        .ok_or(HookError::NotFound)?;
    Ok(member_record(queue, &view))
}

pub(crate) async fn participants(
    shared: &Shared,
    account: AccountSid,
    conference: ConferenceSid,
) -> Vec<ParticipantRecord> {
    match shared.conferences.snapshot(account, conference).await {
        Some(room) => room
            .participants
            .iter()
            .filter(|p| {
                p.joined_at.is_some() || p.status != engine::conference::ParticipantStatus::Complete
            })
            .map(|p| participant_record(account, conference, p))
            .collect(),
        None => Vec::new(),
    }
}

async fn participant(
    shared: &Shared,
    account: AccountSid,
    conference: ConferenceSid,
    who: &ParticipantId,
) -> Result<ParticipantRecord, HookError> {
    let room = shared
        .conferences
        .snapshot(account, conference)
        .await
        .ok_or(HookError::NotFound)?;
    room.participants
        .iter()
        .find(|p| match who {
            ParticipantId::Call(sid) => p.call_sid == *sid,
            ParticipantId::Label(label) => p.label.as_deref() == Some(label),
        })
        .map(|p| participant_record(account, conference, p))
        .ok_or(HookError::NotFound)
}

pub(crate) async fn update_participant(
    shared: &Shared,
    account: AccountSid,
    conference: ConferenceSid,
    who: ParticipantKey,
    update: ParticipantUpdate,
) -> Result<ParticipantRecord, HookError> {
    let who = key(who);
    let announce = update.announce_url.clone().map(music);
    let change = engine::conference::ParticipantUpdate {
        muted: update.muted,
        hold: update.hold,
        hold_music: update.hold_url.map(music),
        wait_music: update.wait_url.map(music),
        beep_on_exit: update.beep_on_exit,
        end_conference_on_exit: update.end_conference_on_exit,
        coaching: update.coaching,
        call_sid_to_coach: update.call_sid_to_coach,
    };
    let changes = change != engine::conference::ParticipantUpdate::default();
    if changes {
        shared
            .conferences
            .update_participant(account, conference, who.clone(), change)
            .await
            .map_err(refused)?;
    }
    if let Some(m) = announce {
        shared
            .conferences
            .announce(account, conference, Some(who.clone()), m)
            .await
            .map_err(refused)?;
    }
    participant(shared, account, conference, &who).await
}

pub(crate) async fn remove_participant(
    shared: &Shared,
    account: AccountSid,
    conference: ConferenceSid,
    who: ParticipantKey,
) -> Result<(), HookError> {
    shared
        .conferences
        .kick(account, conference, key(who))
        .await
        .map_err(refused)
}

pub(crate) async fn update_conference(
    shared: &Shared,
    account: AccountSid,
    conference: ConferenceSid,
    update: ConferenceUpdate,
) -> Result<ConferenceRecord, HookError> {
    if let Some(m) = update.announce {
        shared
            .conferences
            .announce(account, conference, None, music(m))
            .await
            .map_err(refused)?;
    }
    if update.end {
        // Answered once the room's end is saved; a room already over reads as it is stored.
        let _ = shared.conferences.end(account, conference).await;
    }
    shared
        .store
        .conference(&account, &conference)
        .await
        .map_err(|e| HookError::Internal(e.to_string()))?
        .ok_or(HookError::NotFound)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Calls `to` and, once it answers, runs `<Dial><Conference>` for it: the participant joins
/// the room like any caller would (Twilio lists it from then on).
pub(crate) async fn create_participant(
    shared: Arc<Shared>,
    p: CreateParticipant,
) -> Result<ParticipantRecord, HookError> {
    let (name, sid) = match &p.conference {
        ConferenceTarget::Sid(sid) => {
            let row = shared
                .store
                .conference(&p.account_sid, sid)
                .await
                .map_err(|e| HookError::Internal(e.to_string()))?
                .ok_or(HookError::NotFound)?;
            (row.friendly_name, *sid)
        }
        ConferenceTarget::FriendlyName(name) => {
            let account = shared
                .store
                .account(&p.account_sid)
                .await
                .map_err(|e| HookError::Internal(e.to_string()))?
                .ok_or(HookError::NotFound)?;
            // The room opens now (or is the one live), so the participant's SID is real.
            let sid = shared
                .conferences
                .open(&shared, p.account_sid, &account.auth_token, name);
            (name.clone(), sid)
        }
    };
    let mut attrs = String::new();
    let mut attr = |k: &str, v: &str| {
        attrs.push_str(&format!(" {k}=\"{}\"", escape(v)));
    };
    attr("muted", if p.muted { "true" } else { "false" });
    attr("beep", &p.beep);
    attr(
        "startConferenceOnEnter",
        if p.start_conference_on_enter {
            "true"
        } else {
            "false"
        },
    );
    attr(
        "endConferenceOnExit",
        if p.end_conference_on_exit {
            "true"
        } else {
            "false"
        },
    );
    attr("maxParticipants", &p.max_participants.to_string());
    if let Some(label) = &p.label {
        attr("participantLabel", label);
    }
    if let (true, Some(coach)) = (p.coaching, p.call_sid_to_coach) {
        attr("coach", coach.as_str());
    }
    if let Some(wait) = &p.wait_url {
        attr("waitUrl", wait);
        attr("waitMethod", &p.wait_method);
    }
    if let Some(cb) = &p.conference_status_callback {
        attr("statusCallback", cb);
        attr("statusCallbackMethod", &p.conference_status_callback_method);
        attr(
            "statusCallbackEvent",
            &p.conference_status_callback_events.join(" "),
        );
    }
    if matches!(p.conference_record.as_str(), "true" | "record-from-start") {
        attr("record", "record-from-start");
    }
    let twiml = format!(
        "<Response><Dial><Conference{attrs}>{}</Conference></Dial></Response>",
        escape(&name)
    );
    let call = api::CreateCall {
        account_sid: p.account_sid,
        to: p.to.clone(),
        from: p.from.clone(),
        url: None,
        method: "POST".into(),
        twiml: Some(twiml),
        fallback_url: None,
        fallback_method: "POST".into(),
        status_callback: p.status_callback.clone(),
        status_callback_method: p.status_callback_method.clone(),
        status_callback_events: p.status_callback_events.clone(),
        timeout: p.timeout,
        time_limit: p.time_limit,
        send_digits: None,
        record: p.record,
        quiet_hours: api::QuietHours { policy: p.quiet_hours_policy.clone(), hours: None, live: true },
    };
    let record = crate::outbound::create(shared, call).await?;
    let now = Utc::now();
    Ok(ParticipantRecord {
        account_sid: p.account_sid,
        conference_sid: sid,
        call_sid: record.sid,
        label: p.label,
        muted: p.muted,
        hold: false,
        coaching: p.coaching,
        call_sid_to_coach: p.call_sid_to_coach,
        end_conference_on_exit: p.end_conference_on_exit,
        start_conference_on_enter: p.start_conference_on_enter,
        status: ParticipantStatus::Queued,
        date_created: now,
        date_updated: now,
    })
}
