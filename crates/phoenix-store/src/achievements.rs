//! The records of achievements and webhooks (SPEC §7.5–7.7), as every backend returns them.
//! Validation of their contents is the core's (`phoenix_core::achievement`, `phoenix_core::webhook`);
//! the store keeps them, folds events into progress, and keeps the webhooks' outbox.

use crate::rewards::Activity;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// An achievement (SPEC §7.5). `metric` and `steps` are the validated, canonical JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Achievement {
    pub tenant_id: String,
    pub achievement_id: String,
    pub name: String,
    pub description: String,
    pub status: Activity,
    pub hidden: bool,
    pub metric: serde_json::Value,
    pub steps: serde_json::Value,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a new achievement is made of (validated by the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct NewAchievement {
    pub tenant_id: String,
    pub achievement_id: String,
    pub name: String,
    pub description: String,
    pub status: Activity,
    pub hidden: bool,
    pub metric: serde_json::Value,
    pub steps: serde_json::Value,
}

/// A change to an achievement: `None` leaves a field as it is. `steps` must extend the current ones
/// (checked by the caller against the achievement it read).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AchievementPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: Option<Activity>,
    pub hidden: Option<bool>,
    pub steps: Option<serde_json::Value>,
}

/// An achievement with, per step, how many players completed it (the admin view).
#[derive(Debug, Clone, PartialEq)]
pub struct AchievementWithCompletions {
    pub achievement: Achievement,
    /// One per step, in step order.
    pub completions: Vec<u64>,
}

/// One player's progress on one achievement.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayerAchievement {
    pub achievement: Achievement,
    /// The count, the sum, or the best streak so far.
    pub value: f64,
    /// Per step, when it was completed (the acceptance time of the event that crossed it).
    pub completed_at: Vec<Option<Timestamp>>,
}

/// `active` or `disabled` (webhooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookStatus {
    Active,
    Disabled,
}

impl WebhookStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookStatus::Active => "active",
            WebhookStatus::Disabled => "disabled",
        }
    }

    pub fn parse(raw: &str) -> Option<WebhookStatus> {
        match raw {
            "active" => Some(WebhookStatus::Active),
            "disabled" => Some(WebhookStatus::Disabled),
            _ => None,
        }
    }
}

/// A webhook (SPEC §7.6). Its secrets are kept sealed by the store and never part of this record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub tenant_id: String,
    pub webhook_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub status: WebhookStatus,
    pub description: String,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Why it was disabled by the server (a 410 answer), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
}

/// What a new webhook is made of (validated by the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct NewWebhook {
    pub tenant_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub status: WebhookStatus,
    pub description: String,
}

/// A change to a webhook: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub status: Option<WebhookStatus>,
    pub description: Option<String>,
}

/// A delivery's state (SPEC §7.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub(crate) fn code(self) -> i64 {
        match self {
            DeliveryState::Pending => 0,
            DeliveryState::Delivered => 1,
            DeliveryState::Failed => 2,
        }
    }

    pub(crate) fn from_code(code: i64) -> DeliveryState {
        match code {
            1 => DeliveryState::Delivered,
            2 => DeliveryState::Failed,
            _ => DeliveryState::Pending,
        }
    }
}

/// One row of a webhook's deliveries log: an attempt, or a message not attempted yet (`attempt` 0).
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    /// The message's `webhook-id`.
    pub delivery_id: String,
    pub event_type: String,
    pub attempt: u32,
    pub attempted_at: Option<Timestamp>,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: Option<u64>,
    /// When the message is tried next (pending only).
    pub next_attempt_at: Option<Timestamp>,
    /// The message's state now.
    pub state: DeliveryState,
    /// Where the row sits in the list (the keyset cursor).
    pub position: (Timestamp, String, u32),
}

/// A message due for delivery, with what sending it takes (its `Debug` leaves the keys out).
#[derive(Clone)]
pub struct DueDelivery {
    pub tenant_id: String,
    pub webhook_id: String,
    pub message_id: String,
    pub event_type: String,
    pub url: String,
    pub payload: String,
    /// The attempt this is (1 for the first).
    pub attempt: u32,
    /// When the message was made (the delivery lag is measured from it).
    pub created_at: Timestamp,
    /// The signing secrets' keys, the newest first (two during a rotation's grace period).
    pub keys: Vec<Vec<u8>>,
}

impl std::fmt::Debug for DueDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DueDelivery")
            .field("tenant_id", &self.tenant_id)
            .field("webhook_id", &self.webhook_id)
            .field("message_id", &self.message_id)
            .field("event_type", &self.event_type)
            .field("attempt", &self.attempt)
            .field("keys", &format_args!("<{} hidden>", self.keys.len()))
            .finish_non_exhaustive()
    }
}

/// How an attempt went.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptOutcome {
    pub attempted_at: Timestamp,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
    /// A 2xx answer.
    pub delivered: bool,
    /// A 410 answer: the webhook is disabled.
    pub gone: bool,
}
