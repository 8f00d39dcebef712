//! Property tests of every game's bet parser: any JSON, any stake, is a validated bet or a
//! typed `BetError`, never a panic; a bet that parses plays (and replays to the same
//! outcome) without a panic, paying nothing negative.

use croupier_games::catalog::ALL_GAMES;
use croupier_games::{FairRng, GameId, parse_bet, play, replay};
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
        match parse_bet(game, stake, &bet) {
            Err(refusal) => prop_assert!(!refusal.to_string().is_empty()),
            Ok(parsed) => {
                let outcome = play(&parsed, stake, &mut FairRng::new("s", "c", 7));
                prop_assert!(outcome.payout.is_none_or(|p| p >= 0));
                let replayed = replay(game, stake, &bet, &[], "s", "c", 7);
                prop_assert_eq!(replayed.map(|o| o.detail), Ok(outcome.detail));
            }
        }
    }
}
