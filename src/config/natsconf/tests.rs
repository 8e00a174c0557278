//! Unit tests of the nats-server configuration reader: every construct of the
//! syntax, includes, variables, and the wording of each parse error.

use super::*;
use serde_json::json;
use std::path::PathBuf;

fn parsed(text: &str) -> Value {
    match parse(text) {
        Ok(map) => Value::Object(map),
        Err(e) => panic!("parse failed: {e}\n--- text ---\n{text}"),
    }
}

fn error(text: &str) -> String {
    match parse(text) {
        Ok(map) => panic!("expected an error, got {map:?}\n--- text ---\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// A fresh directory under the system temp dir for include tests.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("natsconf-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The Go account server's config file, verbatim (shared with `tests/config.rs`).
const GO_ERA: &str = include_str!("../../../tests/data/go-era.conf");

#[test]
fn go_era_config_parses_exactly() {
    assert_eq!(
        parsed(GO_ERA),
        json!({
            "operatorjwtpath": "deploy/demo/operator.jwt",
            "http": { "host": "127.0.0.1", "port": 9090, "readtimeout": 5000 },
            "nats": {
                "servers": ["nats://127.0.0.1:4222"],
                "connecttimeout": 5000,
                "usercredentials": "sys.creds"
            },
            "store": { "dir": "/var/lib/jwts", "shard": true },
            "logging": { "time": true, "debug": false, "colors": true, "pid": false }
        })
    );
}

#[test]
fn nats_server_config_sample() {
    let text = r#"
# nats-server in operator mode, pointed at the account server
listen: 127.0.0.1:4222
http_port = 8222
operator: /path/op.jwt
system_account: ACI2BQJAF7GTHK4LMZ3ZOMBCSQNKOGMXNJH4VYOFRDUIB5J6QKXIHMDU
resolver: URL(http://127.0.0.1:9090/jwt/v1/accounts/)
max_payload: 1MB

authorization {
  users = [
    {user: a, password: "b"}
    {user: "c", password: 'd$e'}
  ]
  timeout: 0.5
}

cluster {
  name: demo
  routes = [
    nats-route://127.0.0.1:6222   # the seed
    nats-route://127.0.0.1:6223
  ]
}
"#;
    assert_eq!(
        parsed(text),
        json!({
            "listen": "127.0.0.1:4222",
            "http_port": 8222,
            "operator": "/path/op.jwt",
            "system_account": "ACI2BQJAF7GTHK4LMZ3ZOMBCSQNKOGMXNJH4VYOFRDUIB5J6QKXIHMDU",
            "resolver": "URL(http://127.0.0.1:9090/jwt/v1/accounts/)",
            "max_payload": 1_048_576,
            "authorization": {
                "users": [
                    { "user": "a", "password": "b" },
                    { "user": "c", "password": "d$e" }
                ],
                "timeout": 0.5
            },
            "cluster": {
                "name": "demo",
                "routes": ["nats-route://127.0.0.1:6222", "nats-route://127.0.0.1:6223"]
            }
        })
    );
}

#[test]
fn empty_and_comment_only_files_are_empty_maps() {
    assert_eq!(parsed(""), json!({}));
    assert_eq!(parsed("\n  \n"), json!({}));
    assert_eq!(parsed("# just a comment\n// and another\n"), json!({}));
}

#[test]
fn comments_of_both_kinds() {
    let text = r#"
# hash comment
// slash comment
a: 1 # trailing hash
b: "x # not a comment" // trailing slashes
c: nats://host:4222 // the // in the URL is not a comment
d: pass#word
block { # after brace
  f: 2 // inside
} # after close
"#;
    assert_eq!(
        parsed(text),
        json!({
            "a": 1,
            "b": "x # not a comment",
            "c": "nats://host:4222",
            "d": "pass#word",
            "block": { "f": 2 }
        })
    );
}

#[test]
fn separators_and_key_forms() {
    let text = r#"
colon: 1
equals = 2
space 3
nospace:4
"Quoted Key": 5
'single key' = 6
semi: 7; comma: 8, last: 9
"#;
    assert_eq!(
        parsed(text),
        json!({
            "colon": 1, "equals": 2, "space": 3, "nospace": 4,
            "quoted key": 5, "single key": 6,
            "semi": 7, "comma": 8, "last": 9
        })
    );
}

#[test]
fn crlf_line_endings() {
    let text = "a: 1\r\nb: x # c\r\nlist: [\r\n  p\r\n  q\r\n]\r\nm {\r\n  k: v\r\n}\r\n";
    assert_eq!(
        parsed(text),
        json!({ "a": 1, "b": "x", "list": ["p", "q"], "m": { "k": "v" } })
    );
}

#[test]
fn nested_blocks_in_every_form() {
    let text = r#"
outer {
  plain { a: 1 }
  colon: { b: 2; c: 3 }
  equals = {
    deeper {
      deepest { d: "x" }
    }
  }
  empty {}
}
"#;
    assert_eq!(
        parsed(text),
        json!({
            "outer": {
                "plain": { "a": 1 },
                "colon": { "b": 2, "c": 3 },
                "equals": { "deeper": { "deepest": { "d": "x" } } },
                "empty": {}
            }
        })
    );
}

#[test]
fn arrays_multi_line_without_commas() {
    let text = r#"
inline: [a, b, c]
multi: [
  "x"
  'y'   # comment
  z     // comment
]
mixed: [1, 2
  3,
  4,
]
nested: [[1, 2], [], ["three"]]
maps: [
  { name: one }
  { name: two, tags: [t1 t2] }
]
empty: []
"#;
    assert_eq!(
        parsed(text)["multi"],
        json!(["x", "y", "z"]),
        "newline-separated elements"
    );
    // `[t1 t2]`: a space does not separate elements, so it is one bare string.
    assert_eq!(
        parsed(text),
        json!({
            "inline": ["a", "b", "c"],
            "multi": ["x", "y", "z"],
            "mixed": [1, 2, 3, 4],
            "nested": [[1, 2], [], ["three"]],
            "maps": [{ "name": "one" }, { "name": "two", "tags": ["t1 t2"] }],
            "empty": []
        })
    );
}

#[test]
fn string_escapes() {
    let text = r#"
dq: "quote \" backslash \\ slash \/ nl \n tab \t cr \r"
unicode: "caf\u00e9 \uD83D\uDE00 \x41"
sq: 'C:\path\no escapes "here"'
multiline: "one
two"
"#;
    assert_eq!(
        parsed(text),
        json!({
            "dq": "quote \" backslash \\ slash / nl \n tab \t cr \r",
            "unicode": "café 😀 A",
            "sq": "C:\\path\\no escapes \"here\"",
            "multiline": "one\ntwo"
        })
    );
}

#[test]
fn scalar_types() {
    let text = r#"
int: 42
negative: -17
float: 3.25
negfloat: -0.5
t1: true
t2: YES
t3: On
f1: False
f2: no
f3: OFF
quoted_bool: "true"
quoted_num: "42"
duration: "5s"
bare_duration: 5s
ip: 127.0.0.1
hostport: 127.0.0.1:4222
version: 1.2.3
path: /var/lib/jwts
greeting: hello   world   
bcrypt: $2a$11$W2zko751KUvVy59mUTWmpOdWjpEm5qhcCZRd05GjI/sSOT.xtiHyG
"#;
    assert_eq!(
        parsed(text),
        json!({
            "int": 42, "negative": -17, "float": 3.25, "negfloat": -0.5,
            "t1": true, "t2": true, "t3": true,
            "f1": false, "f2": false, "f3": false,
            "quoted_bool": "true", "quoted_num": "42",
            "duration": "5s", "bare_duration": "5s",
            "ip": "127.0.0.1", "hostport": "127.0.0.1:4222", "version": "1.2.3",
            "path": "/var/lib/jwts",
            "greeting": "hello   world",
            "bcrypt": "$2a$11$W2zko751KUvVy59mUTWmpOdWjpEm5qhcCZRd05GjI/sSOT.xtiHyG"
        })
    );
}

#[test]
fn size_suffixes_follow_nats_server() {
    let text = "a: 1k\nb: 1kb\nc: 2KB\nd: 1mb\ne: 1gb\nf: 1M\ng: 3Gi\nh: 1MiB\ni: -2k\nj: 1tb\n";
    assert_eq!(
        parsed(text),
        json!({
            "a": 1000, "b": 1024, "c": 2048, "d": 1_048_576, "e": 1_073_741_824_i64,
            "f": 1_000_000, "g": 3_i64 * 1_073_741_824, "h": 1_048_576, "i": -2000,
            "j": 1_099_511_627_776_i64
        })
    );
    assert_eq!(
        parsed("x: 1kbx")["x"],
        json!("1kbx"),
        "unknown suffix is a string"
    );
    let err = error("big: 9999999999pb");
    assert!(
        err.contains("line 1") && err.contains("out of range"),
        "{err}"
    );
}

#[test]
fn keys_are_lowercased_and_last_duplicate_wins() {
    let text = "Port: 1\nport: 2\nBLOCK { Inner: a }\nblock { other: b }\n";
    // A repeated block replaces the earlier one whole, as in nats-server.
    assert_eq!(
        parsed(text),
        json!({ "port": 2, "block": { "other": "b" } })
    );
}

#[test]
fn variables_resolve_from_keys_then_environment() {
    std::env::set_var("NATSCONF_TEST_PORT", "4222");
    std::env::set_var("NATSCONF_TEST_HOST", "nats://example.com:4222");
    let text = r#"
base_dir: /data
PORT_BASE = 8000
http {
  dir: $base_dir
  port: $port_base
  inner { dir_again: $BASE_DIR }
}
local { x: 1, y: $x }
servers: [$NATSCONF_TEST_HOST]
port: $NATSCONF_TEST_PORT
bcrypt: "$2a$11$not.a.variable"
"#;
    assert_eq!(
        parsed(text),
        json!({
            "base_dir": "/data",
            "port_base": 8000,
            "http": { "dir": "/data", "port": 8000, "inner": { "dir_again": "/data" } },
            "local": { "x": 1, "y": 1 },
            "servers": ["nats://example.com:4222"],
            "port": 4222,
            "bcrypt": "$2a$11$not.a.variable"
        })
    );
}

#[test]
fn undefined_variable_is_an_error_naming_it() {
    let err = error("a: 1\nb: $NATSCONF_TEST_SURELY_UNDEFINED_VAR\n");
    assert!(err.starts_with("line 2, column 4:"), "{err}");
    assert!(err.contains("NATSCONF_TEST_SURELY_UNDEFINED_VAR"), "{err}");
    // A key inside a sibling block is not in scope.
    let err = error("a { x: 1 }\nb { y: $x }\n");
    assert!(err.starts_with("line 2") && err.contains("'$x'"), "{err}");
}

#[test]
fn include_merges_relative_to_the_including_file() {
    let dir = scratch_dir("include");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(
        dir.join("sub/accounts.conf"),
        "accounts { A: { users: [ {user: a} ] } }\ninclude deeper.conf\n",
    )
    .unwrap();
    std::fs::write(dir.join("sub/deeper.conf"), "deep: yes\nport: 1\n").unwrap();
    let main = "port: 4222\ninclude sub/accounts.conf\nafter: done\nnested {\n  include \"sub/deeper.conf\"\n}\n";

    // With the including file's directory as the base, as the config loader passes it.
    let base = Some(dir.as_path());
    let map = parse_with_base(main, base).unwrap();
    assert_eq!(map["port"], json!(1), "include overrides keys before it");
    assert_eq!(map["after"], json!("done"));
    assert_eq!(map["deep"], json!(true));
    assert_eq!(map["nested"]["port"], json!(1));
    assert!(map["accounts"].as_object().unwrap().contains_key("a"));

    // Missing file: the error names the path and the include's line.
    let err = parse_with_base("a: 1\ninclude nope.conf\n", base)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("line 2: cannot read included file"),
        "{err}"
    );
    assert!(err.contains("nope.conf"), "{err}");

    // An error inside the included file reports both locations.
    std::fs::write(dir.join("bad.conf"), "ok: 1\nbroken {\n").unwrap();
    let err = parse_with_base("\n\ninclude bad.conf\n", base)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("line 3: in included file"), "{err}");
    assert!(
        err.contains("line 3: expected '}' to close block opened on line 2"),
        "{err}"
    );

    // A file including itself stops instead of recursing forever.
    std::fs::write(dir.join("loop.conf"), "include loop.conf\n").unwrap();
    let err = parse_with_base("include loop.conf\n", base)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nested more than"), "{err}");

    // `include: x` (with a separator) is an ordinary key, as in nats-server.
    assert_eq!(parsed("include: x"), json!({ "include": "x" }));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn braces_around_the_whole_file_and_json() {
    // The syntax has no null: JSON's `null` reads as the bare string "null".
    let text = r#"{ "Name": "x", "list": [1, 2.5, true], "obj": { "k": null } }"#;
    assert_eq!(
        parsed(text),
        json!({ "name": "x", "list": [1, 2.5, true], "obj": { "k": "null" } })
    );
}

#[test]
fn error_unterminated_string() {
    let err = error("a: 1\nb: \"never closed\nc: 3\n");
    assert_eq!(
        err,
        "line 2, column 4: unterminated string: no closing \" before the end of the file"
    );
    let err = error("a: 'open");
    assert!(
        err.starts_with("line 1, column 4: unterminated string"),
        "{err}"
    );
}

#[test]
fn error_unclosed_block_and_array() {
    assert_eq!(
        error("http {\n  port: 1\n"),
        "line 3: expected '}' to close block opened on line 1"
    );
    assert_eq!(
        error("outer {\n  inner {\n  }\n  x: 1"),
        "line 4: expected '}' to close block opened on line 1"
    );
    assert_eq!(
        error("a: [1,\n2\n"),
        "line 3: expected ']' to close array opened on line 1"
    );
    let err = error("a { b: 1 ]");
    assert!(
        err.starts_with("line 1, column 10: unexpected ']'"),
        "{err}"
    );
    let err = error("a: 1\n}\n");
    assert!(err.starts_with("line 2, column 1: unexpected '}'"), "{err}");
}

#[test]
fn error_missing_value() {
    assert_eq!(
        error("host: x\nport:\nother: y\n"),
        "line 2, column 6: missing value for key 'port'"
    );
    assert_eq!(
        error("a {\n  b = # nothing\n}"),
        "line 2, column 7: missing value for key 'b'"
    );
    assert_eq!(
        error("last"),
        "line 1, column 5: missing value for key 'last'"
    );
}

#[test]
fn error_other_syntax() {
    let err = error("a: \"x\" y\n");
    assert!(
        err.starts_with("line 1, column 8: expected a newline, ',' or ';' after the value of 'a'"),
        "{err}"
    );
    let err = error("a: \"bad \\q escape\"");
    assert!(
        err.starts_with("line 1, column 9: invalid escape sequence '\\q'"),
        "{err}"
    );
    let err = error("a: [1,, 2]");
    assert!(
        err.starts_with("line 1, column 7: expected an array element"),
        "{err}"
    );
    let err = error(": 1");
    assert!(
        err.starts_with("line 1, column 1: expected a key, found ':'"),
        "{err}"
    );
}
