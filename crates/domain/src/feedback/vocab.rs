//! The closed vocabularies of feedback. Each has one spelling on the wire (`as_str`, the
//! same as its serde name) and parses it back, so configuration, events and the gRPC
//! adapter agree.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A value outside a vocabulary, naming what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}; expected one of: {expected}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
    pub expected: String,
}

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownValue {
                        kind: $kind,
                        value: s.to_owned(),
                        expected: $name::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
                    })
            }
        }
    };
}

vocabulary! {
    /// How bad the problem was for the customer. Ordered: `Minor < ... < Critical`.
    Severity, "severity" {
        Minor => "minor",
        Moderate => "moderate",
        Major => "major",
        Critical => "critical",
    }
}

vocabulary! {
    /// Who answers for a complaint, bottom to top. Ordered: `StoreManager < ... < Owner`.
    Level, "escalation level" {
        StoreManager => "store_manager",
        RegionalManager => "regional_manager",
        Owner => "owner",
    }
}

impl Level {
    /// The level above, if any.
    pub fn above(self) -> Option<Level> {
        match self {
            Level::StoreManager => Some(Level::RegionalManager),
            Level::RegionalManager => Some(Level::Owner),
            Level::Owner => None,
        }
    }
}

vocabulary! {
    /// How a complaint reached the chain.
    Channel, "channel" {
        Till => "till",
        Phone => "phone",
        Web => "web",
        CommentCard => "comment_card",
        Letter => "letter",
    }
}

vocabulary! {
    /// The part of the business that failed the customer.
    Touchpoint, "touchpoint" {
        Products => "products",
        Service => "service",
        Premises => "premises",
        SignageAndAdvertising => "signage_and_advertising",
        Staff => "staff",
        QualityAndPrice => "quality_and_price",
        WarrantyAndComplaintHandling => "warranty_and_complaint_handling",
    }
}

vocabulary! {
    /// How the chain reached the customer.
    ContactMethod, "contact method" {
        Phone => "phone",
        InPerson => "in_person",
        Letter => "letter",
        Email => "email",
    }
}

impl ContactMethod {
    /// A personal contact: a voice, not a form letter. A major or critical complaint's
    /// first response only counts when it is personal.
    pub fn is_personal(self) -> bool {
        matches!(self, ContactMethod::Phone | ContactMethod::InPerson)
    }
}

vocabulary! {
    /// The tangible result a resolution gave the customer.
    Remedy, "remedy" {
        Apology => "apology",
        Refund => "refund",
        Replacement => "replacement",
        Compensation => "compensation",
        Fix => "fix",
    }
}

vocabulary! {
    /// Why a defector says they left.
    DefectionReason, "defection reason" {
        Price => "price",
        Staff => "staff",
        Quality => "quality",
        Assortment => "assortment",
        Location => "location",
        MovedAway => "moved_away",
        Other => "other",
    }
}

vocabulary! {
    /// What came of reaching out to a defector.
    OutreachOutcome, "outreach outcome" {
        NotReached => "not_reached",
        Reached => "reached",
        WonBack => "won_back",
        Lost => "lost",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips_through_its_spelling_and_serde() {
        for s in Severity::ALL {
            assert_eq!(s.as_str().parse::<Severity>(), Ok(*s));
            assert_eq!(serde_json::to_string(s).ok(), Some(format!("\"{s}\"")));
        }
        for t in Touchpoint::ALL {
            assert_eq!(t.as_str().parse::<Touchpoint>(), Ok(*t));
            assert_eq!(serde_json::to_string(t).ok(), Some(format!("\"{t}\"")));
        }
    }

    #[test]
    fn an_unknown_value_names_the_vocabulary_and_the_choices() {
        let e = "urgent".parse::<Severity>().expect_err("not a severity");
        assert_eq!(
            e.to_string(),
            "unknown severity \"urgent\"; expected one of: minor, moderate, major, critical"
        );
    }

    #[test]
    fn the_chain_goes_store_region_owner_and_ends() {
        assert_eq!(Level::StoreManager.above(), Some(Level::RegionalManager));
        assert_eq!(Level::RegionalManager.above(), Some(Level::Owner));
        assert_eq!(Level::Owner.above(), None);
        assert!(Severity::Minor < Severity::Critical);
        assert!(ContactMethod::Phone.is_personal() && !ContactMethod::Letter.is_personal());
    }
}
