//! Which failures of a send are for good: the buyer blocked the bot, deleted their account, the
//! chat is gone, the bot was removed from the group. Such a message is never tried again; its
//! reason is stored as a short code the agent console explains. Pure.

use teloxide::{ApiError, RequestError};

/// Why Telegram will never take a message for a chat: a code the console explains.
pub type Refusal = &'static str;

/// The refusal an error means, or `None` for a failure worth another try (network, 5xx …).
pub fn refusal(error: &RequestError) -> Option<Refusal> {
    match error {
        RequestError::Api(api) => match api {
            ApiError::BotBlocked => Some("blocked"),
            ApiError::UserDeactivated | ApiError::GroupDeactivated => Some("deactivated"),
            ApiError::ChatNotFound => Some("chat_not_found"),
            ApiError::BotKicked
            | ApiError::BotKickedFromSupergroup
            | ApiError::BotKickedFromChannel => Some("kicked"),
            ApiError::CantInitiateConversation | ApiError::CantTalkWithBots => Some("forbidden"),
            // A 403 teloxide has no name for ("Forbidden: bot was kicked from the group chat").
            ApiError::Unknown(text) if text.starts_with("Forbidden") => {
                Some(if text.contains("kicked") {
                    "kicked"
                } else {
                    "forbidden"
                })
            }
            _ => None,
        },
        // The group became a supergroup: this chat id is gone, its members write from the new one.
        RequestError::MigrateToChatId(_) => Some("migrated"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use teloxide::types::ChatId;

    use super::*;

    #[test]
    fn refusals_for_good_are_told_from_failures_worth_another_try() {
        #[track_caller]
        fn check(error: RequestError, expect: Option<Refusal>) {
            assert_eq!(refusal(&error), expect, "{error:?}");
        }
        check(RequestError::Api(ApiError::BotBlocked), Some("blocked"));
        check(
            RequestError::Api(ApiError::UserDeactivated),
            Some("deactivated"),
        );
        check(
            RequestError::Api(ApiError::ChatNotFound),
            Some("chat_not_found"),
        );
        check(
            RequestError::Api(ApiError::Unknown(
                "Forbidden: bot was kicked from the group chat".into(),
            )),
            Some("kicked"),
        );
        check(
            RequestError::Api(ApiError::Unknown(
                "Forbidden: bot is not a member of the supergroup chat".into(),
            )),
            Some("forbidden"),
        );
        check(
            RequestError::MigrateToChatId(ChatId(-1_005)),
            Some("migrated"),
        );
        check(
            RequestError::Api(ApiError::Unknown("Bad Gateway".into())),
            None,
        );
        check(RequestError::Api(ApiError::MessageTextIsEmpty), None);
    }
}
