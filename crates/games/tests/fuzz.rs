//! Property tests of every game's bet parser: any JSON, any stake, is a validated bet or a
//! typed `BetError`, never a panic; a bet that parses plays (and replays to the same
//! outcome) without a panic, paying nothing negative. A bet and its outcome write the same
//! JSON the untyped build stored (the bet as sent, keys sorted) and read back unchanged.

use croupier_games::catalog::ALL_GAMES;
use croupier_games::{BetRequest, Detail, FairRng, GameId, parse_bet, play, replay, validate};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Field names the parsers look for, so generated objects reach past the first check.
const KEYS: [&str; 8] = [
    "target",
    "direction",
    "bets",
    "type",
    "numbers",
    "amount",
    "number",
    "lines",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (0i64..10_000).prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        prop_oneof![
            Just("over".to_owned()),
            Just("under".to_owned()),
            Just("red".to_owned()),
            Just("straight".to_owned()),
            Just("dozen".to_owned()),
            "\\PC{0,12}",
        ]
        .prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((0..KEYS.len(), "[a-z]{0,6}", any::<bool>(), inner), 0..6)
                .prop_map(|fields| {
                    let mut map = Map::new();
                    for (k, other, known, value) in fields {
                        let key = if known { KEYS[k].to_owned() } else { other };
                        map.insert(key, value);
                    }
                    Value::Object(map)
                }),
        ]
    })
}

fn stake() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        1i64..200_000,
        Just(0),
        Just(i64::MIN),
        Just(i64::MAX)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn any_bet_parses_or_is_refused_with_a_typed_error(
        bet in json_value(),
        stake in stake(),
        game in 0..ALL_GAMES.len(),
    ) {
        let game: GameId = ALL_GAMES[game];
        match parse_bet(game, stake, bet.clone()) {
            Err(refusal) => prop_assert!(!refusal.to_string().is_empty()),
            Ok(request) => {
                let parsed = validate(stake, &request).expect("parse_bet validated it");
                let outcome = play(&parsed, stake, &mut FairRng::new("s", "c", 7));
                prop_assert!(outcome.payout.is_none_or(|p| p >= 0));
                let replayed = replay(stake, &request, &[], "s", "c", 7);
                prop_assert_eq!(request.to_text(), bet.to_string());
                prop_assert_eq!(BetRequest::from_text(game, &request.to_text()), Ok(request));
                let stored = outcome.detail.to_text();
                prop_assert_eq!(Detail::from_text(game, &stored).ok(), Some(outcome.detail.clone()));
                prop_assert_eq!(replayed.map(|o| o.detail), Ok(outcome.detail));
            }
        }
    }
}
