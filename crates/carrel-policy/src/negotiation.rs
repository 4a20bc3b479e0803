//! The Dataspace Protocol's contract negotiation state machine, as a pure function.
//!
//! Each message a party sends moves the negotiation from one state to the next, and
//! only the listed sender may send it:
//!
//! ```text
//! (start) ──C request──> REQUESTED ──P agreement──> AGREED ──C verification──> VERIFIED
//!    │                      │  ▲                                                  │
//!    └─P offer─> OFFERED <──┘  └─C request──  OFFERED ──C accepted──> ACCEPTED     P finalized
//!                                                                                 ▼
//!              termination: REQUESTED, OFFERED by either; ACCEPTED, VERIFIED    FINALIZED
//!              by the provider; AGREED by the consumer ──> TERMINATED
//! ```

use carrel_model::NegotiationState;

/// Side of the negotiation that sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The consumer.
    Consumer,
    /// The provider.
    Provider,
}

/// Negotiation messages of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// `ContractRequestMessage`.
    Request,
    /// `ContractOfferMessage`.
    Offer,
    /// `ContractNegotiationEventMessage` with `eventType` ACCEPTED.
    Accepted,
    /// `ContractAgreementMessage`.
    Agreement,
    /// `ContractAgreementVerificationMessage`.
    Verification,
    /// `ContractNegotiationEventMessage` with `eventType` FINALIZED.
    Finalized,
    /// `ContractNegotiationTerminationMessage`.
    Termination,
}

/// A message that is not allowed in the current state or from this sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{side:?} may not send {message:?} when the negotiation is {}",
    state.map_or("not started", NegotiationState::as_str)
)]
pub struct TransitionError {
    /// State before the message.
    pub state: Option<NegotiationState>,
    /// Sender.
    pub side: Side,
    /// Message sent.
    pub message: Message,
}

/// Returns the state after `side` sends `message` in `state` (`None` before the start).
///
/// # Errors
///
/// [`TransitionError`] when the protocol does not allow the message there.
pub fn transition(
    state: Option<NegotiationState>,
    side: Side,
    message: Message,
) -> Result<NegotiationState, TransitionError> {
    use Message as M;
    use NegotiationState as S;
    use Side::{Consumer as C, Provider as P};

    let next = match (state, side, message) {
        (None, C, M::Request) => Some(S::Requested),
        (None, P, M::Offer) => Some(S::Offered),
        (Some(S::Requested), P, M::Offer) => Some(S::Offered),
        (Some(S::Requested), P, M::Agreement) => Some(S::Agreed),
        (Some(S::Offered), C, M::Request) => Some(S::Requested),
        (Some(S::Offered), C, M::Accepted) => Some(S::Accepted),
        (Some(S::Accepted), P, M::Agreement) => Some(S::Agreed),
        (Some(S::Agreed), C, M::Verification) => Some(S::Verified),
        (Some(S::Verified), P, M::Finalized) => Some(S::Finalized),
        (Some(S::Requested | S::Offered), _, M::Termination) => Some(S::Terminated),
        (Some(S::Accepted | S::Verified), P, M::Termination) => Some(S::Terminated),
        (Some(S::Agreed), C, M::Termination) => Some(S::Terminated),
        _ => None,
    };
    next.ok_or(TransitionError {
        state,
        side,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use NegotiationState as S;

    #[test]
    fn happy_path_reaches_finalized() {
        let mut state = None;
        let steps = [
            (Side::Consumer, Message::Request, S::Requested),
            (Side::Provider, Message::Agreement, S::Agreed),
            (Side::Consumer, Message::Verification, S::Verified),
            (Side::Provider, Message::Finalized, S::Finalized),
        ];
        for (side, message, expected) in steps {
            let next = transition(state, side, message).unwrap();
            assert_eq!(next, expected);
            state = Some(next);
        }
    }

    #[test]
    fn consumer_may_not_finalize() {
        assert!(transition(Some(S::Verified), Side::Consumer, Message::Finalized).is_err());
    }

    #[test]
    fn provider_may_not_accept() {
        assert!(transition(Some(S::Offered), Side::Provider, Message::Accepted).is_err());
    }

    #[test]
    fn terminal_states_accept_nothing() {
        let messages = [
            Message::Request,
            Message::Offer,
            Message::Accepted,
            Message::Agreement,
            Message::Verification,
            Message::Finalized,
            Message::Termination,
        ];
        for state in [S::Finalized, S::Terminated] {
            for side in [Side::Consumer, Side::Provider] {
                for message in messages {
                    assert!(transition(Some(state), side, message).is_err());
                }
            }
        }
    }

    #[test]
    fn termination_respects_sender() {
        assert!(transition(Some(S::Agreed), Side::Provider, Message::Termination).is_err());
        assert!(transition(Some(S::Agreed), Side::Consumer, Message::Termination).is_ok());
        assert!(transition(Some(S::Verified), Side::Consumer, Message::Termination).is_err());
        assert!(transition(Some(S::Requested), Side::Consumer, Message::Termination).is_ok());
    }
}
