//! A server's URL as logs, pages and error messages may show it: every password in it masked.
//!
//! An operator's URL can carry the password three ways libpq reads: in the user part
//! (`postgres://app:PASSWORD@db/casino`), as a query parameter (`?password=PASSWORD`, its
//! name percent-encoded or not) and, in the key=value form, as `password=PASSWORD` (quoted or
//! not). Logs are shipped, pages are read by people without the database's password, so each
//! of the three is shown as `***`; `sslpassword` too, though the URL parser refuses it.

use percent_encoding::percent_decode_str;

/// What stands for a password wherever a URL is shown.
const MASK: &str = "***";

/// `url` with each password in it masked; the rest as given. Text is read as a URL only when
/// what comes before its first `://` is a URL scheme (a letter, then letters, digits, `+`,
/// `-` or `.`): key=value text may hold `://` in any value (`options`, the password itself),
/// and is read as key=value text.
pub fn shown(url: &str) -> String {
    match url
        .split_once("://")
        .filter(|(scheme, _)| is_scheme(scheme))
    {
        Some((scheme, rest)) => format!("{scheme}://{}", masked_url_rest(rest)),
        None => masked_key_values(url),
    }
}

/// RFC 3986's `scheme`.
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Whether a parameter of this name holds a password.
fn is_password(name: &str) -> bool {
    let name = percent_decode_str(name).decode_utf8_lossy();
    name.eq_ignore_ascii_case("password") || name.eq_ignore_ascii_case("sslpassword")
}

/// What follows `scheme://`: the user part's password, then the query's passwords, masked.
fn masked_url_rest(rest: &str) -> String {
    masked_query(&masked_user_password(rest))
}

/// Everything from the user's `:` to the last `@` masked. tokio-postgres ends the user part at
/// the first `@`, wherever it is, so a password may hold `/`, `?` or `@` unencoded; masking up
/// to the last `@` hides all of it, at the price of the hosts too when a query value holds an
/// `@` as well (a URL shown with too little beats a password shown).
fn masked_user_password(rest: &str) -> String {
    match rest.rsplit_once('@') {
        Some((user_info, after)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{user}:{MASK}@{after}"),
            None => rest.to_owned(),
        },
        None => rest.to_owned(),
    }
}

/// The value of every password parameter of the query (after the first `?`) masked.
fn masked_query(rest: &str) -> String {
    let Some((before_query, query)) = rest.split_once('?') else {
        return rest.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_password(name) => format!("{name}={MASK}"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{before_query}?{}", pairs.join("&"))
}

/// The key=value form (`host=db password='a b' dbname=casino`), its passwords masked.
fn masked_key_values(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        rest = copied(&mut shown, rest, leading_spaces(rest));
        if rest.is_empty() {
            return shown;
        }
        let key_len = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..key_len];
        rest = copied(&mut shown, rest, key_len);
        rest = copied(&mut shown, rest, leading_spaces(rest));
        if !rest.starts_with('=') {
            continue;
        }
        rest = copied(&mut shown, rest, 1);
        rest = copied(&mut shown, rest, leading_spaces(rest));
        let value_len = value_length(rest);
        match is_password(key) {
            true => {
                shown.push_str(MASK);
                rest = &rest[value_len..];
            }
            false => rest = copied(&mut shown, rest, value_len),
        }
    }
}

/// Appends the first `len` bytes of `text` to `shown`; returns the rest.
fn copied<'a>(shown: &mut String, text: &'a str, len: usize) -> &'a str {
    shown.push_str(&text[..len]);
    &text[len..]
}

fn leading_spaces(text: &str) -> usize {
    text.len() - text.trim_start().len()
}

/// The length of the value `text` starts with: quoted (`'…'`, a backslash escaping the next
/// character) up to its closing quote, or else up to the next space.
fn value_length(text: &str) -> usize {
    let quoted = text.starts_with('\'');
    let mut escaped = false;
    for (at, c) in text.char_indices().skip(usize::from(quoted)) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '\'' if quoted => return at + 1,
            c if !quoted && c.is_whitespace() => return at,
            _ => {}
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn a_password_in_the_user_part_is_masked() {
        assert_eq!(
            shown("postgres://app:s3cret@db:5432/casino"),
            "postgres://app:***@db:5432/casino"
        );
        assert_eq!(
            shown("postgresql://app:p@ss@db1,db2/casino?target_session_attrs=read-write"),
            "postgresql://app:***@db1,db2/casino?target_session_attrs=read-write"
        );
        assert_eq!(shown("postgres://app:s3cret@db"), "postgres://app:***@db");
        assert_eq!(
            shown("postgres://app@db/casino"),
            "postgres://app@db/casino"
        );
    }

    #[test]
    fn a_password_in_the_query_is_masked_however_its_name_is_spelled() {
        assert_eq!(
            shown("postgres://app@db/casino?application_name=x&password=s3cret"),
            "postgres://app@db/casino?application_name=x&password=***"
        );
        assert_eq!(
            shown("postgres://app@db?pass%77ord=s3cret&sslmode=require"),
            "postgres://app@db?pass%77ord=***&sslmode=require"
        );
        assert_eq!(
            shown("postgres://a:one@db/x?password=two&sslpassword=three"),
            "postgres://a:***@db/x?password=***&sslpassword=***"
        );
    }

    #[test]
    fn a_password_in_the_key_value_form_is_masked_quoted_or_not() {
        assert_eq!(
            shown("host=db password=s3cret dbname=casino"),
            "host=db password=*** dbname=casino"
        );
        assert_eq!(
            shown("host=db password = 'it\\'s a secret' dbname=casino"),
            "host=db password = *** dbname=casino"
        );
        assert_eq!(shown("password='' user=app"), "password=*** user=app");
        assert_eq!(
            shown("host=db user=app dbname=casino"),
            "host=db user=app dbname=casino"
        );
    }

    #[test]
    fn a_password_holding_what_ends_a_url_part_is_masked_whole() {
        for (url, expected) in [
            (
                "postgres://app:a/b?c@db/casino",
                "postgres://app:***@db/casino",
            ),
            (
                "postgres://app:p@ss@db/casino",
                "postgres://app:***@db/casino",
            ),
            (
                "postgres://app@db/casino?password=x@y&sslmode=require",
                "postgres://app@db/casino?password=***&sslmode=require",
            ),
            (
                "postgres://app:a?password=b@db/casino",
                "postgres://app:***@db/casino",
            ),
        ] {
            assert_eq!(shown(url), expected, "{url}");
        }
        // A query value with an `@` past the password: the hosts are masked too.
        assert_eq!(
            shown("postgres://app:pw@db/casino?application_name=me@box"),
            "postgres://app:***@box"
        );
    }

    #[test]
    fn key_value_text_holding_a_url_is_masked_as_key_value_text() {
        assert_eq!(
            shown("host=db password=s3cret options='-c x=http://y'"),
            "host=db password=*** options='-c x=http://y'"
        );
        assert_eq!(
            shown("host=db password=a://b dbname=casino"),
            "host=db password=*** dbname=casino"
        );
        assert_eq!(shown("password=a://b"), "password=***");
        // Any URL's user part is masked: a monitored target may be an HTTP one.
        assert_eq!(
            shown("https://scraper:s3cret@node-1:7001"),
            "https://scraper:***@node-1:7001"
        );
    }

    #[test]
    fn odd_text_is_shown_as_given_and_an_unclosed_quote_masked_to_the_end() {
        for text in ["", "   ", "host", "=x", "host= ", "host =db", "password"] {
            assert_eq!(shown(text), text);
        }
        assert_eq!(shown("password='open user=app"), "password=***");
    }
}
