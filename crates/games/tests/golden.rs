//! The exact JSON of every game's outcome and of a blackjack hand's state, pinned byte for
//! byte: the node stores these documents in the ledger and answers them to players, so rounds
//! stored by any earlier build must read, replay and verify the same. The expected strings
//! were taken from the build that still carried outcomes as untyped JSON.

use croupier_games::blackjack::{Action, Hand, total};
use croupier_games::{FairRng, GameId, parse_bet, play, validate};
use serde_json::json;

const SERVER: &str = "golden-server-seed";
const CLIENT: &str = "golden-client";

fn rng(nonce: u64) -> FairRng {
    FairRng::new(SERVER, CLIENT, nonce)
}

/// The outcome of one single-step round, as JSON, then its payout.
fn single(game: GameId, stake: i64, bet: serde_json::Value, nonce: u64) -> String {
    let request = parse_bet(game, stake, bet).unwrap();
    let parsed = validate(stake, &request).unwrap();
    let outcome = play(&parsed, stake, &mut rng(nonce));
    format!(
        "{} pays {:?}",
        serde_json::to_string(&outcome.detail).unwrap(),
        outcome.payout
    )
}

fn dice() -> Vec<(String, String)> {
    let over = json!({"target": 5000, "direction": "over"});
    let under = json!({"target": 2500, "direction": "under"});
    (0..4)
        .map(|nonce| {
            let bet = if nonce % 2 == 0 { &over } else { &under };
            let roll = single(GameId::Dice, 100, bet.clone(), nonce);
            (format!("dice {nonce}"), roll)
        })
        .collect()
}

fn roulette() -> Vec<(String, String)> {
    let bet = json!({"bets": [
        {"type": "split", "numbers": [20, 17], "amount": 40},
        {"type": "dozen", "which": 2, "amount": 30},
        {"type": "red", "amount": 20},
        {"type": "straight", "numbers": [17], "amount": 10},
    ]});
    (0..3)
        .map(|nonce| {
            let spin = single(GameId::Roulette, 100, bet.clone(), nonce);
            (format!("roulette {nonce}"), spin)
        })
        .collect()
}

fn slot() -> Vec<(String, String)> {
    (0..2)
        .map(|nonce| {
            let spin = single(GameId::Slot, 100, json!(null), nonce);
            (format!("slot {nonce}"), spin)
        })
        .collect()
}

/// A hand's stored state and its public view, dealt, then after each action (hit below 17,
/// double on 11, else stand), for hands that end every way.
fn blackjack() -> Vec<(String, String)> {
    let mut seen = Vec::new();
    for nonce in 0..8 {
        let mut hand = Hand::deal(100, &mut rng(nonce));
        seen.push((format!("hand {nonce} dealt"), snapshot(&hand)));
        while !hand.is_finished() {
            let action = match (hand.player.len(), total(&hand.player).0) {
                (2, 11) => Action::Double,
                (_, t) if t < 17 => Action::Hit,
                _ => Action::Stand,
            };
            hand.act(action, &mut rng(nonce)).unwrap();
            seen.push((format!("hand {nonce} {action:?}"), snapshot(&hand)));
        }
    }
    seen
}

fn snapshot(hand: &Hand) -> String {
    let outcome = hand.outcome();
    format!(
        "state {}\nview {} pays {:?}",
        serde_json::to_string(hand).unwrap(),
        serde_json::to_string(&outcome.detail).unwrap(),
        outcome.payout
    )
}

/// (label, document) as the untyped build wrote them.
const GOLDEN: &[(&str, &str)] = &[
    ("dice 0", "{\"roll\":4780,\"won\":false} pays Some(0)"),
    ("dice 1", "{\"roll\":4492,\"won\":false} pays Some(0)"),
    ("dice 2", "{\"roll\":5040,\"won\":true} pays Some(198)"),
    ("dice 3", "{\"roll\":828,\"won\":true} pays Some(396)"),
    (
        "roulette 0",
        "{\"colour\":\"black\",\"pocket\":17} pays Some(1170)",
    ),
    (
        "roulette 1",
        "{\"colour\":\"black\",\"pocket\":8} pays Some(0)",
    ),
    (
        "roulette 2",
        "{\"colour\":\"green\",\"pocket\":0} pays Some(0)",
    ),
    (
        "slot 0",
        "{\"grid\":[[\"cherry\",\"bell\",\"lemon\",\"bell\",\"lemon\"],[\"lemon\",\"seven\",\"orange\",\"seven\",\"orange\"],[\"orange\",\"cherry\",\"plum\",\"cherry\",\"plum\"]],\"stops\":[12,29,25,21,17],\"wins\":[]} pays Some(0)",
    ),
    (
        "slot 1",
        "{\"grid\":[[\"cherry\",\"bell\",\"orange\",\"orange\",\"bell\"],[\"lemon\",\"seven\",\"plum\",\"plum\",\"seven\"],[\"cherry\",\"cherry\",\"cherry\",\"bell\",\"cherry\"]],\"stops\":[28,3,9,13,14],\"wins\":[{\"count\":3,\"line\":3,\"pays\":80,\"symbol\":\"cherry\"}]} pays Some(80)",
    ),
    (
        "hand 0 dealt",
        "state {\"stake\":100,\"player\":[\"7C\",\"7D\"],\"dealer\":[\"JH\",\"3S\"],\"next_card\":4,\"doubled\":false,\"actions\":[],\"result\":null}\nview {\"actions\":[],\"allowed_actions\":[\"hit\",\"stand\",\"double\"],\"dealer\":[\"JH\",\"??\"],\"dealer_total\":null,\"doubled\":false,\"player\":[\"7C\",\"7D\"],\"player_total\":14,\"result\":null} pays None",
    ),
    (
        "hand 0 Hit",
        "state {\"stake\":100,\"player\":[\"7C\",\"7D\",\"QS\"],\"dealer\":[\"JH\",\"3S\"],\"next_card\":5,\"doubled\":false,\"actions\":[\"hit\"],\"result\":\"player_bust\"}\nview {\"actions\":[\"hit\"],\"allowed_actions\":[],\"dealer\":[\"JH\",\"3S\"],\"dealer_total\":13,\"doubled\":false,\"player\":[\"7C\",\"7D\",\"QS\"],\"player_total\":24,\"result\":\"player_bust\"} pays Some(0)",
    ),
    (
        "hand 1 dealt",
        "state {\"stake\":100,\"player\":[\"7S\",\"10H\"],\"dealer\":[\"JC\",\"10S\"],\"next_card\":4,\"doubled\":false,\"actions\":[],\"result\":null}\nview {\"actions\":[],\"allowed_actions\":[\"hit\",\"stand\",\"double\"],\"dealer\":[\"JC\",\"??\"],\"dealer_total\":null,\"doubled\":false,\"player\":[\"7S\",\"10H\"],\"player_total\":17,\"result\":null} pays None",
    ),
    (
        "hand 1 Stand",
        "state {\"stake\":100,\"player\":[\"7S\",\"10H\"],\"dealer\":[\"JC\",\"10S\"],\"next_card\":4,\"doubled\":false,\"actions\":[\"stand\"],\"result\":\"dealer_wins\"}\nview {\"actions\":[\"stand\"],\"allowed_actions\":[],\"dealer\":[\"JC\",\"10S\"],\"dealer_total\":20,\"doubled\":false,\"player\":[\"7S\",\"10H\"],\"player_total\":17,\"result\":\"dealer_wins\"} pays Some(0)",
    ),
    (
        "hand 2 dealt",
        "state {\"stake\":100,\"player\":[\"AC\",\"JH\"],\"dealer\":[\"6C\",\"5C\"],\"next_card\":4,\"doubled\":false,\"actions\":[],\"result\":\"player_blackjack\"}\nview {\"actions\":[],\"allowed_actions\":[],\"dealer\":[\"6C\",\"5C\"],\"dealer_total\":11,\"doubled\":false,\"player\":[\"AC\",\"JH\"],\"player_total\":21,\"result\":\"player_blackjack\"} pays Some(250)",
    ),
    (
        "hand 3 dealt",
        "state {\"stake\":100,\"player\":[\"8D\",\"AS\"],\"dealer\":[\"7H\",\"6C\"],\"next_card\":4,\"doubled\":false,\"actions\":[],\"result\":null}\nview {\"actions\":[],\"allowed_actions\":[\"hit\",\"stand\",\"double\"],\"dealer\":[\"7H\",\"??\"],\"dealer_total\":null,\"doubled\":false,\"player\":[\"8D\",\"AS\"],\"player_total\":19,\"result\":null} pays None",
    ),
    (
        "hand 3 Stand",
        "state {\"stake\":100,\"player\":[\"8D\",\"AS\"],\"dealer\":[\"7H\",\"6C\",\"KS\"],\"next_card\":5,\"doubled\":false,\"actions\":[\"stand\"],\"result\":\"dealer_bust\"}\nview {\"actions\":[\"stand\"],\"allowed_actions\":[],\"dealer\":[\"7H\",\"6C\",\"KS\"],\"dealer_total\":23,\"doubled\":false,\"player\":[\"8D\",\"AS\"],\"player_total\":19,\"result\":\"dealer_bust\"} pays Some(200)",
    ),
    (
        "hand 4 dealt",
        "state {\"stake\":100,\"player\":[\"9H\",\"JH\"],\"dealer\":[\"6D\",\"6S\"],\"next_card\":4,\"doubled\":false,\"actions\":[],\"result\":null}\nview {\"actions\":[],\"allowed_actions\":[\"hit\",\"stand\",\"double\"],\"dealer\":[\"6D\",\"??\"],\"dealer_total\":null,\"doubled\":false,\"player\":[\"9H\",\"JH\"],\"player_total\":19,\"result\":null} pays None",
    ),
    (
        "hand 4 Stand",
        "state {\"stake\":100,\"player\":[\"9H\",\"JH\"],\"dealer\":[\"6D\",\"6S\",\"KS\"],\"next_card\":5,\"doubled\":false,\"actions\":[\"stand\"],\"result\":\"dealer_bust\"}\nview {\"actions\":[\"stand\"],\"allowed_actions\":[],\"dealer\":[\"6D\",\"6S\",\"KS\"],\"dealer_total\":22,\"doubled\":false,\"player\":[\"9H\",\"JH\"],\"player_total\":19,\"result\":\"dealer_bust\"} pays Some(200)",
    ),
    (
        "hand 5 dealt",
        "state {\"stake\":100,\"player\":[\"7H\",\"2C\"],\"dealer\":[\"AH\",\"10C\"],\"next_card\":4,\"doubled\":false,\"actions\":[],\"result\":\"dealer_blackjack\"}\nview {\"actions\":[],\"allowed_actions\":[],\"dealer\":[\"AH\",\"10C\"],\"dealer_total\":21,\"doubled\":false,\"player\":[\"7H\",\"2C\"],\"player_total\":9,\"result\":\"dealer_blackjack\"} pays Some(0)",
    ),
    (
        "hand 6 dealt",
        "state {\"stake\":100,\"player\":[\"7D\",\"6D\"],\"dealer\":[\"AD\",\"8H\"],\"next_card\":4,\"doubled\":false,\"actions\":[],\"result\":null}\nview {\"actions\":[],\"allowed_actions\":[\"hit\",\"stand\",\"double\"],\"dealer\":[\"AD\",\"??\"],\"dealer_total\":null,\"doubled\":false,\"player\":[\"7D\",\"6D\"],\"player_total\":13,\"result\":null} pays None",
    ),
    (
        "hand 6 Hit",
        "state {\"stake\":100,\"player\":[\"7D\",\"6D\",\"4C\"],\"dealer\":[\"AD\",\"8H\"],\"next_card\":5,\"doubled\":false,\"actions\":[\"hit\"],\"result\":null}\nview {\"actions\":[\"hit\"],\"allowed_actions\":[\"hit\",\"stand\"],\"dealer\":[\"AD\",\"??\"],\"dealer_total\":null,\"doubled\":false,\"player\":[\"7D\",\"6D\",\"4C\"],\"player_total\":17,\"result\":null} pays None",
    ),
    (
        "hand 6 Stand",
        "state {\"stake\":100,\"player\":[\"7D\",\"6D\",\"4C\"],\"dealer\":[\"AD\",\"8H\"],\"next_card\":5,\"doubled\":false,\"actions\":[\"hit\",\"stand\"],\"result\":\"dealer_wins\"}\nview {\"actions\":[\"hit\",\"stand\"],\"allowed_actions\":[],\"dealer\":[\"AD\",\"8H\"],\"dealer_total\":19,\"doubled\":false,\"player\":[\"7D\",\"6D\",\"4C\"],\"player_total\":17,\"result\":\"dealer_wins\"} pays Some(0)",
    ),
    (
        "hand 7 dealt",
        "state {\"stake\":100,\"player\":[\"2C\",\"7H\"],\"dealer\":[\"8H\",\"4C\"],\"next_card\":4,\"doubled\":false,\"actions\":[],\"result\":null}\nview {\"actions\":[],\"allowed_actions\":[\"hit\",\"stand\",\"double\"],\"dealer\":[\"8H\",\"??\"],\"dealer_total\":null,\"doubled\":false,\"player\":[\"2C\",\"7H\"],\"player_total\":9,\"result\":null} pays None",
    ),
    (
        "hand 7 Hit",
        "state {\"stake\":100,\"player\":[\"2C\",\"7H\",\"8S\"],\"dealer\":[\"8H\",\"4C\"],\"next_card\":5,\"doubled\":false,\"actions\":[\"hit\"],\"result\":null}\nview {\"actions\":[\"hit\"],\"allowed_actions\":[\"hit\",\"stand\"],\"dealer\":[\"8H\",\"??\"],\"dealer_total\":null,\"doubled\":false,\"player\":[\"2C\",\"7H\",\"8S\"],\"player_total\":17,\"result\":null} pays None",
    ),
    (
        "hand 7 Stand",
        "state {\"stake\":100,\"player\":[\"2C\",\"7H\",\"8S\"],\"dealer\":[\"8H\",\"4C\",\"5D\"],\"next_card\":6,\"doubled\":false,\"actions\":[\"hit\",\"stand\"],\"result\":\"push\"}\nview {\"actions\":[\"hit\",\"stand\"],\"allowed_actions\":[],\"dealer\":[\"8H\",\"4C\",\"5D\"],\"dealer_total\":17,\"doubled\":false,\"player\":[\"2C\",\"7H\",\"8S\"],\"player_total\":17,\"result\":\"push\"} pays Some(100)",
    ),
];

#[test]
fn every_game_keeps_its_outcome_and_state_json() {
    let seen: Vec<(String, String)> = [dice(), roulette(), slot(), blackjack()].concat();
    let labels: Vec<&str> = seen.iter().map(|(label, _)| label.as_str()).collect();
    let expected: Vec<&str> = GOLDEN.iter().map(|(label, _)| *label).collect();
    assert_eq!(labels, expected);
    for ((label, text), (_, golden)) in seen.iter().zip(GOLDEN) {
        assert_eq!(text, golden, "{label} changed shape");
    }
}

/// Refusals of malformed bets, word for word: players and their clients see these messages.
fn refusals() -> Vec<String> {
    let bets = [
        (GameId::Dice, 100, json!("x")),
        (GameId::Dice, 100, json!({"target": 5000})),
        (
            GameId::Dice,
            100,
            json!({"target": 5000, "direction": "over", "x": 1}),
        ),
        (
            GameId::Dice,
            100,
            json!({"target": 10000, "direction": "over"}),
        ),
        (
            GameId::Dice,
            100,
            json!({"target": 50, "direction": "under"}),
        ),
        (GameId::Dice, 5, json!("x")),
        (GameId::Roulette, 100, json!("x")),
        (GameId::Roulette, 100, json!({"bets": ["x"]})),
        (
            GameId::Roulette,
            100,
            json!({"bets": [{"type": "red", "amount": 100, "x": 1}]}),
        ),
        (
            GameId::Roulette,
            100,
            json!({"bets": [{"type": "red", "numbers": null, "amount": 100}]}),
        ),
        (
            GameId::Roulette,
            100,
            json!({"bets": [{"type": "dozen", "which": null, "amount": 100}]}),
        ),
        (
            GameId::Roulette,
            100,
            json!({"bets": [{"type": "dozen", "which": "2", "amount": 100}]}),
        ),
        (
            GameId::Roulette,
            100,
            json!({"bets": [{"type": "split", "numbers": [3, 4], "amount": 100}]}),
        ),
        (
            GameId::Roulette,
            100,
            json!({"bets": [{"type": "red", "numbers": [1], "amount": 100}]}),
        ),
        (
            GameId::Roulette,
            100,
            json!({"bets": [{"type": "red", "amount": -100}]}),
        ),
        (
            GameId::Roulette,
            100,
            json!({"bets": [{"type": "red", "amount": 60}]}),
        ),
        (GameId::Roulette, 100, json!({"bets": []})),
        (GameId::Slot, 15, json!(null)),
        (GameId::Blackjack, 1_000_000, json!(null)),
    ];
    bets.into_iter()
        .map(|(game, stake, bet)| match parse_bet(game, stake, bet) {
            Ok(_) => "accepted".to_owned(),
            Err(refusal) => format!("{}: {refusal}", refusal.code()),
        })
        .collect()
}

/// As the untyped build refused them.
const REFUSALS: &[&str] = &[
    "invalid_bet: invalid bet: dice expects {\"target\": 0..9999, \"direction\": \"under\"|\"over\"}: invalid type: string \"x\", expected struct DiceBet",
    "invalid_bet: invalid bet: dice expects {\"target\": 0..9999, \"direction\": \"under\"|\"over\"}: missing field `direction`",
    "invalid_bet: invalid bet: dice expects {\"target\": 0..9999, \"direction\": \"under\"|\"over\"}: unknown field `x`, expected `target` or `direction`",
    "invalid_bet: invalid bet: target 10000 is outside 0..9999",
    "invalid_bet: invalid bet: win chance must be between 1% and 98%, this bet wins on 50 of 10000 rolls",
    "stake_below_min: stake 5 is below the table minimum of 10",
    "invalid_bet: invalid bet: roulette expects {\"bets\": [{\"type\": \"red\", \"amount\": 100}, {\"type\": \"straight\", \"numbers\": [17], \"amount\": 50}]}: invalid type: string \"x\", expected struct RawRouletteBet",
    "invalid_bet: invalid bet: roulette expects {\"bets\": [{\"type\": \"red\", \"amount\": 100}, {\"type\": \"straight\", \"numbers\": [17], \"amount\": 50}]}: invalid type: string \"x\", expected struct RawBet",
    "invalid_bet: invalid bet: roulette expects {\"bets\": [{\"type\": \"red\", \"amount\": 100}, {\"type\": \"straight\", \"numbers\": [17], \"amount\": 50}]}: unknown field `x`, expected one of `type`, `numbers`, `which`, `amount`",
    "invalid_bet: invalid bet: roulette expects {\"bets\": [{\"type\": \"red\", \"amount\": 100}, {\"type\": \"straight\", \"numbers\": [17], \"amount\": 50}]}: invalid type: null, expected a sequence",
    "invalid_bet: invalid bet: Dozen bets need \"which\": 1, 2 or 3",
    "invalid_bet: invalid bet: roulette expects {\"bets\": [{\"type\": \"red\", \"amount\": 100}, {\"type\": \"straight\", \"numbers\": [17], \"amount\": 50}]}: invalid type: string \"2\", expected u8",
    "invalid_bet: invalid bet: Split cannot cover numbers [3, 4]",
    "invalid_bet: invalid bet: Red is an outside bet and takes no numbers",
    "invalid_bet: invalid bet: bet amounts must be positive, got -100",
    "invalid_bet: invalid bet: bet amounts add up to 60 but the stake is 100",
    "invalid_bet: invalid bet: a spin takes 1 to 50 bets, got 0",
    "invalid_bet: invalid bet: slot stakes are spread over 10 lines and must be a multiple of 10, got 15",
    "stake_above_max: stake 1000000 is above the table maximum of 100000",
];

#[test]
fn malformed_bets_are_refused_word_for_word() {
    assert_eq!(refusals(), REFUSALS);
}
