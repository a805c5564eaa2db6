//! `RateTable.json` (a Dialtone extension): an account's own rates, which price its calls and
//! messages instead of the node's `[pricing]`. A subaccount without one is priced by its
//! parent's. Only a main account sets rates, its own and its subaccounts'; a subaccount reads
//! them.
//!
//! A POST replaces the whole table with what it gives (`Rounding`, repeated `InboundRate`
//! `type=price`, `OutboundRate` and `SmsOutboundRate` `prefix=price`, `SmsInboundRate`); a
//! DELETE removes it. Rates are checked as the node reads them (`billing::RateSheet`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use billing::{NumberType, RateSheet, Rounding};
use chrono::Utc;
use serde_json::{json, Value};
use store::RateTableRecord;

use crate::auth::Ctx;
use crate::params::{Params, Seg};
use crate::render::rfc2822;
use crate::{ApiState, AppError};

/// The code of every refused rate (Twilio's generic invalid parameter).
const INVALID: u32 = 20001;

pub(crate) async fn fetch(State(state): State<ApiState>, ctx: Ctx, Seg(account): Seg<String>) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let table = state.store.effective_rate_table(&account).await?.ok_or_else(|| ctx.not_found())?;
    Ok(Json(render(&account, &table)?))
}

pub(crate) async fn update(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let account = ctx.scope(&account, "")?;
    may_set(&state, &ctx).await?;
    let p = Params::from_body(body)?;
    let sheet = sheet_param(&p)?;
    let rates = serde_json::to_string(&sheet).map_err(|e| AppError::Store(store::StoreError::Corrupt(e.to_string())))?;
    let table = state.store.set_rate_table(&account, &rates, Utc::now()).await?;
    state.hooks.rates_changed();
    // An update of the account's one table, new or not: 200, as Twilio answers updates.
    Ok((StatusCode::OK, Json(render(&account, &table)?)))
}

pub(crate) async fn delete(State(state): State<ApiState>, ctx: Ctx, Seg(account): Seg<String>) -> Result<StatusCode, AppError> {
    let account = ctx.scope(&account, "")?;
    may_set(&state, &ctx).await?;
    if !state.store.delete_rate_table(&account).await? {
        return Err(ctx.not_found());
    }
    state.hooks.rates_changed();
    Ok(StatusCode::NO_CONTENT)
}

/// Rates are set by main accounts: a subaccount may not set its own prices.
async fn may_set(state: &ApiState, ctx: &Ctx) -> Result<(), AppError> {
    let principal = state.store.account(&ctx.account).await?.ok_or_else(|| ctx.not_found())?;
    if principal.is_subaccount() {
        return Err(AppError::Forbidden("only a main account sets rates"));
    }
    Ok(())
}

fn sheet_param(p: &Params) -> Result<RateSheet, AppError> {
    let mut sheet = RateSheet::default();
    if let Some(v) = p.get("Rounding") {
        sheet.rounding = match v {
            "per-minute" => Rounding::PerMinute,
            "per-second" => Rounding::PerSecond,
            _ => return Err(AppError::bad(INVALID, format!("Invalid Rounding {v:?}: per-minute or per-second"))),
        };
    }
    for v in p.get_all("InboundRate") {
        let (kind, price) = pair("InboundRate", v)?;
        let kind = match kind.as_str() {
            "local" => NumberType::Local,
            "mobile" => NumberType::Mobile,
            "toll-free" => NumberType::TollFree,
            _ => return Err(AppError::bad(INVALID, format!("Invalid InboundRate {v:?}: the type is local, mobile or toll-free"))),
        };
        if sheet.inbound.insert(kind, price).is_some() {
            return Err(AppError::bad(INVALID, format!("Invalid InboundRate {v:?}: that type has two rates")));
        }
    }
    for (name, rates) in [("OutboundRate", &mut sheet.outbound), ("SmsOutboundRate", &mut sheet.sms_outbound)] {
        for v in p.get_all(name) {
            let (prefix, price) = pair(name, v)?;
            if rates.insert(prefix, price).is_some() {
                return Err(AppError::bad(INVALID, format!("Invalid {name} {v:?}: that prefix has two rates")));
            }
        }
    }
    sheet.sms_inbound = p.get("SmsInboundRate").filter(|v| !v.is_empty()).map(str::to_owned);
    sheet.table().map_err(|e| AppError::bad(INVALID, format!("Invalid rate table: {e}")))?;
    Ok(sheet)
}

/// `key=price`; a `+` sent unencoded arrives as a space and is read back as `+`.
fn pair(name: &str, value: &str) -> Result<(String, String), AppError> {
    let (key, price) = value
        .split_once('=')
        .ok_or_else(|| AppError::bad(INVALID, format!("Invalid {name} {value:?}: write key=price, e.g. +1555=0.05")))?;
    let key = match key.strip_prefix(' ') {
        Some(rest) => format!("+{rest}"),
        None => key.to_owned(),
    };
    Ok((key, price.trim().to_owned()))
}

pub(crate) fn render(account: &model::AccountSid, table: &RateTableRecord) -> Result<Value, AppError> {
    let sheet: RateSheet = serde_json::from_str(&table.rates)
        .map_err(|e| AppError::Store(store::StoreError::Corrupt(format!("rate table of {}: {e}", table.account_sid))))?;
    Ok(json!({
        "account_sid": account,
        "inherited_from": (table.account_sid != *account).then(|| table.account_sid.to_string()),
        "rounding": sheet.rounding,
        "inbound": sheet.inbound,
        "outbound": sheet.outbound,
        "sms_inbound": sheet.sms_inbound,
        "sms_outbound": sheet.sms_outbound,
        "price_unit": "USD",
        "date_created": rfc2822(table.date_created),
        "date_updated": rfc2822(table.date_updated),
        "uri": format!("/2010-04-01/Accounts/{account}/RateTable.json"),
    }))
}
