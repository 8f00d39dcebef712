//! The names of what players see: the components of the status page (the wallet, each game,
//! the lobby) and which of them an incident on `games` covers. A leaf: the state's
//! maintenance scopes, the incidents, the status views and the API all read this vocabulary
//! from here, and it reads nothing of theirs.

/// Component ids with the names players see, in the order of the status page.
pub const COMPONENTS: [(&str, &str); 6] = [
    ("wallet", "Wallet"),
    ("dice", "Dice"),
    ("roulette", "Roulette"),
    ("slot", "Slot"),
    ("blackjack", "Blackjack"),
    ("lobby", "Lobby"),
];

pub const GAMES: [&str; 4] = ["dice", "roulette", "slot", "blackjack"];

/// Components an incident can be opened on: each of the above, or `games` for all games.
pub fn is_incident_component(name: &str) -> bool {
    name == "games" || COMPONENTS.iter().any(|(id, _)| *id == name)
}

/// What players call a component an incident can be opened on (`games`: all games); `None`
/// for an operators' component (security, the store's replication, ...), which players are
/// never told about.
pub fn players_name(component: &str) -> Option<&'static str> {
    if component == "games" {
        return Some("our games");
    }
    COMPONENTS
        .iter()
        .find(|(id, _)| *id == component)
        .map(|(_, name)| *name)
}

/// Whether an incident on `incident_component` touches `component`.
pub fn affects(incident_component: &str, component: &str) -> bool {
    incident_component == component || (incident_component == "games" && GAMES.contains(&component))
}
