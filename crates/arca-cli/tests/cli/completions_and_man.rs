//! `arca completions SHELL` and `arca man`, generated from the parser
//! itself: bash completes a subcommand and a flag for real, the other
//! shells get a script that names arca, and groff renders the manual page
//! with every subcommand in it. `check` is `verify`.
use crate::common;

use std::process::Command;

use common::*;

#[test]
fn bash_completes_subcommands_and_flags() {
    let tmp = tempdir();
    let arca = Arca::new(tmp.path());
    let script = tmp.path().join("arca.bash");
    let out = arca.run(&["completions", "bash"]).ok();
    std::fs::write(&script, &out.stdout).unwrap();
    // Completion as bash runs it on TAB: the words so far, the word under
    // the cursor, the function the script registered.
    let complete = |words: &str, cword: usize| {
        let prog = format!(
            "source {}; complete -p arca >/dev/null || exit 9; COMP_WORDS=({words}); COMP_CWORD={cword}; \
             COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; _arca arca; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let mut cmd = Command::new("bash");
        cmd.args(["--norc", "-c", &prog]);
        run_command(cmd).ok().stdout
    };
    let subcommands = complete("arca res", 1);
    assert!(subcommands.lines().any(|l| l == "restore"), "{subcommands}");
    let flags = complete("arca restore --ov", 2);
    assert!(flags.lines().any(|l| l == "--overwrite"), "{flags}");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = arca.run(&["completions", shell]).ok();
        assert!(out.stdout.contains("arca") && out.stdout.contains("restore"), "{shell}: {}", out.describe());
    }
    let out = arca.run(&["completions", "tcsh"]).code_is(2);
    assert!(out.stderr.contains("tcsh"), "{}", out.describe());
}

#[test]
fn the_manual_page_renders_with_every_subcommand() {
    let tmp = tempdir();
    let arca = Arca::new(tmp.path());
    let page = arca.run(&["man"]).ok();
    assert!(page.stdout.contains(".TH arca 1"), "{}", page.describe());
    let roff = tmp.path().join("arca.1");
    std::fs::write(&roff, &page.stdout).unwrap();
    let mut cmd = Command::new("groff");
    cmd.args(["-man", "-Tascii", "-P-cbou"]).arg(&roff);
    let text = run_command(cmd).ok().stdout;
    for word in ["NAME", "SYNOPSIS", "backup", "restore", "verify", "completions", "--password-command"] {
        assert!(text.contains(word), "the rendered page lacks {word}:\n{text}");
    }
}

#[test]
fn check_is_verify() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    arca.init();
    let v = arca.json(&["check"]);
    assert_eq!(v["valid"], serde_json::json!(true), "{v}");
}
