//! The records of rewards (SPEC §7.1–7.4): reward rules, their settlements, the grants ledger, coupon
//! campaigns, codes and redemptions, as every backend returns them. Validation of their contents is
//! the core's (`phoenix_core::reward`, `phoenix_core::coupon`); the store keeps and folds them.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// `active` or `inactive` (rules and campaigns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    Active,
    Inactive,
}

impl Activity {
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Active => "active",
            Activity::Inactive => "inactive",
        }
    }

    pub fn parse(raw: &str) -> Option<Activity> {
        match raw {
            "active" => Some(Activity::Active),
            "inactive" => Some(Activity::Inactive),
            _ => None,
        }
    }
}

/// A reward rule (SPEC §7.2). `tiers` is the validated, canonical JSON of its tiers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardRule {
    pub tenant_id: String,
    pub rule_id: String,
    pub leaderboard_id: String,
    pub name: String,
    pub status: Activity,
    pub min_participants: u32,
    pub settle_delay_seconds: u32,
    pub tiers: serde_json::Value,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Windows that ended at or before this instant are settled only by hand: the rule (or its
    /// leaderboard) was not active when they ended. Raised when either becomes active.
    pub active_since: Timestamp,
    /// The periods its leaderboard was not active, `[from, until)` (`until` absent while it still
    /// is), newest last, at most [`MAX_BOARD_PAUSES`]: a window that ended inside one is not settled by
    /// itself; one that ended outside is, after its delay, even if the board was deactivated since.
    #[serde(default)]
    pub board_paused: Vec<(Timestamp, Option<Timestamp>)>,
}

/// Board pauses a rule remembers (older ones lie before anything the settler still looks at).
pub const MAX_BOARD_PAUSES: usize = 64;

impl RewardRule {
    /// Whether the rule's leaderboard was inactive at `at` (as far as the rule has seen).
    pub fn board_paused_at(&self, at: Timestamp) -> bool {
        self.board_paused
            .iter()
            .any(|(from, until)| *from < at && until.is_none_or(|u| at < u))
    }

    /// When the leaderboard's current pause began, if it is paused now.
    pub fn board_paused_since(&self) -> Option<Timestamp> {
        self.board_paused
            .last()
            .and_then(|(from, until)| until.is_none().then_some(*from))
    }
}

/// What a new rule is made of (validated by the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct NewRewardRule {
    pub tenant_id: String,
    pub rule_id: String,
    pub leaderboard_id: String,
    pub name: String,
    pub status: Activity,
    pub min_participants: u32,
    pub settle_delay_seconds: u32,
    pub tiers: serde_json::Value,
}

/// A change to a rule: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RewardRulePatch {
    pub name: Option<String>,
    pub status: Option<Activity>,
    pub min_participants: Option<u32>,
    pub settle_delay_seconds: Option<u32>,
    pub tiers: Option<serde_json::Value>,
}

/// A window as a settlement records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettledWindow {
    pub id: String,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
}

/// One settlement of a rule over an ended window (SPEC §7.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settlement {
    pub rule_id: String,
    pub rule_version: u64,
    pub leaderboard_id: String,
    pub window: SettledWindow,
    pub settled_at: Timestamp,
    pub ranked_entries: u32,
    pub grants: u64,
}

/// What `settle` did.
#[derive(Debug, Clone, PartialEq)]
pub enum SettleOutcome {
    /// The settlement was made now (201).
    Created(Settlement),
    /// The (rule, window) was settled before (200).
    Existing(Settlement),
    /// The window has not ended (409).
    NotEnded,
    /// The rule's leaderboard has no such window (400 naming `window_id`).
    UnknownWindow,
}

/// One grant a settlement would make (a preview row).
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewGrant {
    pub grant_id: String,
    pub user_id: String,
    pub rank: u32,
    pub reward: serde_json::Value,
}

/// What settling a rule's current window would grant right now, one page of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    pub window: SettledWindow,
    pub window_status: &'static str,
    pub ranked_entries: u32,
    /// Every grant the settlement would make (the page's `total`).
    pub total: u64,
    pub grants: Vec<PreviewGrant>,
    /// Index of the first grant after this page, when there is one.
    pub next: Option<u64>,
}

/// Where a grant came from (SPEC §7.3, §7.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantSource {
    /// `reward_rule`, `achievement` or `coupon`.
    pub kind: String,
    /// The rule, achievement or campaign.
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub leaderboard_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub window_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rank: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub step: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<String>,
}

/// A grant's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    Pending,
    Claimed,
    Voided,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Pending => "pending",
            GrantStatus::Claimed => "claimed",
            GrantStatus::Voided => "voided",
        }
    }

    pub fn parse(raw: &str) -> Option<GrantStatus> {
        match raw {
            "pending" => Some(GrantStatus::Pending),
            "claimed" => Some(GrantStatus::Claimed),
            "voided" => Some(GrantStatus::Voided),
            _ => None,
        }
    }

    pub(crate) fn code(self) -> i64 {
        match self {
            GrantStatus::Pending => 0,
            GrantStatus::Claimed => 1,
            GrantStatus::Voided => 2,
        }
    }

    pub(crate) fn from_code(code: i64) -> GrantStatus {
        match code {
            1 => GrantStatus::Claimed,
            2 => GrantStatus::Voided,
            _ => GrantStatus::Pending,
        }
    }
}

/// One grant of the ledger (SPEC §7.3).
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub grant_id: String,
    pub user_id: String,
    pub reward: serde_json::Value,
    pub source: GrantSource,
    pub status: GrantStatus,
    pub created_at: Timestamp,
    pub claimed_at: Option<Timestamp>,
    pub voided_at: Option<Timestamp>,
    pub void_reason: Option<String>,
    /// The personal code a `coupon` reward issued.
    pub coupon_code: Option<String>,
}

impl Grant {
    /// The grant as the API and webhooks show it (SPEC §7.3).
    pub fn to_json(&self) -> serde_json::Value {
        grant_json(
            &self.grant_id,
            &self.user_id,
            self.reward.clone(),
            &self.source,
            self.status,
            self.created_at,
            (self.claimed_at, self.voided_at, self.void_reason.as_deref()),
            self.coupon_code.as_deref(),
        )
    }
}

/// A grant's JSON from its parts (the ledger renders new grants for webhooks without reading them).
#[allow(clippy::too_many_arguments)]
pub(crate) fn grant_json(
    grant_id: &str,
    user_id: &str,
    reward: serde_json::Value,
    source: &GrantSource,
    status: GrantStatus,
    created_at: Timestamp,
    (claimed_at, voided_at, void_reason): (Option<Timestamp>, Option<Timestamp>, Option<&str>),
    coupon_code: Option<&str>,
) -> serde_json::Value {
    let mut out = serde_json::json!({
        "grant_id": grant_id,
        "user_id": user_id,
        "reward": reward,
        "source": source,
        "status": status.as_str(),
        "created_at": created_at,
        "claimed_at": claimed_at,
        "voided_at": voided_at,
    });
    if let Some(reason) = void_reason {
        out["void_reason"] = reason.into();
    }
    if let Some(code) = coupon_code {
        out["coupon_code"] = code.into();
    }
    out
}

/// Which grants to list: newest first, then by `grant_id`, from after `after` (a keyset position).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GrantQuery {
    pub user_id: Option<String>,
    pub source_id: Option<String>,
    pub status: Option<GrantStatus>,
    pub limit: u32,
    pub after: Option<(Timestamp, String)>,
}

/// A page of a list, with the number of everything that matches.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub total: u64,
    pub items: Vec<T>,
    /// Whether more items follow the page.
    pub more: bool,
}

/// What claiming a grant did.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    /// Claimed now or before: the grant as it is.
    Claimed(Grant),
    /// Voided: cannot be claimed (409).
    Voided(Grant),
    /// No such grant of this player (404).
    NotFound,
}

/// A coupon campaign (SPEC §7.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub tenant_id: String,
    pub campaign_id: String,
    pub name: String,
    pub rewards: serde_json::Value,
    /// The shared code, as created.
    pub code: Option<String>,
    pub max_redemptions: Option<u64>,
    pub per_player_limit: u32,
    pub starts_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub status: Activity,
    /// Filled in when read.
    #[serde(default)]
    pub redemptions: u64,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a new campaign is made of (validated by the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct NewCampaign {
    pub tenant_id: String,
    pub campaign_id: String,
    pub name: String,
    pub rewards: serde_json::Value,
    pub code: Option<String>,
    pub max_redemptions: Option<u64>,
    pub per_player_limit: u32,
    pub starts_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub status: Activity,
}

/// A change to a campaign; for the optional limits, `Some(None)` removes the limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CampaignPatch {
    pub name: Option<String>,
    pub status: Option<Activity>,
    pub expires_at: Option<Option<Timestamp>>,
    pub max_redemptions: Option<Option<u64>>,
    pub per_player_limit: Option<u32>,
}

/// A coupon code: a campaign's shared code or a personal single-use one.
#[derive(Debug, Clone, PartialEq)]
pub struct CouponCode {
    /// As shown: generated codes `XXXX-XXXX-XXXX`, shared codes as created.
    pub code: String,
    pub campaign_id: String,
    pub personal: bool,
    pub issued_to: Option<String>,
    pub redeemed_by: Option<String>,
    pub redeemed_at: Option<Timestamp>,
    pub voided_at: Option<Timestamp>,
    pub void_reason: Option<String>,
    pub created_at: Timestamp,
}

/// One redemption of a code (the audit trail).
#[derive(Debug, Clone, PartialEq)]
pub struct Redemption {
    pub redemption_id: String,
    pub code: String,
    pub campaign_id: String,
    pub user_id: String,
    pub redeemed_at: Timestamp,
    pub grant_ids: Vec<String>,
}

impl Redemption {
    /// The redemption as the API and webhooks show it (SPEC §7.7).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "redemption_id": self.redemption_id,
            "code": self.code,
            "campaign_id": self.campaign_id,
            "user_id": self.user_id,
            "redeemed_at": self.redeemed_at,
            "grant_ids": self.grant_ids,
        })
    }
}

/// Why a redemption was refused, in the order SPEC §7.7 checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedeemRefusal {
    /// 404.
    Unknown,
    /// 403: a personal code issued to someone else.
    OtherPlayer,
    Voided,
    Inactive,
    NotStarted,
    Expired,
    /// A single-use code someone has used (or this player already used this code).
    AlreadyUsed,
    PerPlayerLimit,
    MaxRedemptions,
}

impl RedeemRefusal {
    /// A stable label (metrics) .
    pub fn as_str(self) -> &'static str {
        match self {
            RedeemRefusal::Unknown => "unknown",
            RedeemRefusal::OtherPlayer => "other_player",
            RedeemRefusal::Voided => "voided",
            RedeemRefusal::Inactive => "inactive",
            RedeemRefusal::NotStarted => "not_started",
            RedeemRefusal::Expired => "expired",
            RedeemRefusal::AlreadyUsed => "already_used",
            RedeemRefusal::PerPlayerLimit => "per_player_limit",
            RedeemRefusal::MaxRedemptions => "max_redemptions",
        }
    }
}

/// What a redemption did.
#[derive(Debug, Clone, PartialEq)]
pub enum RedeemOutcome {
    /// Redeemed now, or earlier with the same `Idempotency-Key` (then `replayed`).
    Redeemed {
        redemption: Redemption,
        grants: Vec<Grant>,
        replayed: bool,
    },
    Refused(RedeemRefusal),
}
