use super::*;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "iothubgdr")]
struct TestCli {
    #[command(subcommand)]
    command: ClientCommand,
}

fn parse(args: &[&str]) -> Result<ClientCommand, clap::Error> {
    TestCli::try_parse_from(std::iter::once("iothubgdr").chain(args.iter().copied()))
        .map(|c| c.command)
}

#[test]
fn import_takes_its_flags_and_the_connection() {
    let command = parse(&[
        "import",
        "--display-name",
        "plant hub",
        "--secret-file",
        "-",
        "--location",
        "locations/08838336-c357-460d-902a-3aba9528dd22",
        "--wait",
        "--url",
        "http://127.0.0.1:9999",
        "--token-file",
        "/tmp/token",
        "-o",
        "json",
    ])
    .unwrap();
    let ClientCommand::Import(args) = command else {
        panic!("not an import: {command:?}")
    };
    assert_eq!(args.display_name, "plant hub");
    assert_eq!(args.secret_file.as_deref(), Some(std::path::Path::new("-")));
    assert!(args.wait);
    assert_eq!(args.output.output, OutputFormat::Json);
    assert_eq!(args.connection.url, "http://127.0.0.1:9999");
    assert_eq!(
        args.connection.token_file.as_deref(),
        Some(std::path::Path::new("/tmp/token"))
    );
}

#[test]
fn there_is_no_flag_that_takes_a_secret_as_an_argument() {
    for flag in [
        "--secret",
        "--connection-string",
        "--client-secret",
        "--token",
    ] {
        let err = parse(&["import", "--display-name", "x", flag, "HostName=h"]).unwrap_err();
        assert_eq!(
            err.kind(),
            clap::error::ErrorKind::UnknownArgument,
            "{flag}"
        );
    }
}

#[test]
fn subcommands_parse() {
    let id = "08838336-c357-460d-902a-3aba9528dd22";
    assert!(matches!(
        parse(&["imports", "list"]).unwrap(),
        ClientCommand::Imports(ImportsCommand::List { .. })
    ));
    assert!(matches!(
        parse(&["imports", "get", id]).unwrap(),
        ClientCommand::Imports(ImportsCommand::Get { .. })
    ));
    assert!(matches!(
        parse(&["imports", "cancel", id, "--output", "json"]).unwrap(),
        ClientCommand::Imports(ImportsCommand::Cancel { .. })
    ));
    assert!(matches!(
        parse(&["imports", "delete", id]).unwrap(),
        ClientCommand::Imports(ImportsCommand::Delete { .. })
    ));
    assert!(matches!(
        parse(&["locations", "list"]).unwrap(),
        ClientCommand::Locations(LocationsCommand::List { .. })
    ));
    assert!(parse(&["imports", "get"]).is_err());
    assert!(parse(&["imports", "list", "--output", "yaml"]).is_err());
}

#[test]
fn locations_create_takes_negative_coordinates_and_attributes() {
    let command = parse(&[
        "locations",
        "create",
        "--display-name",
        "Plant",
        "--latitude",
        "-33.9",
        "--longitude",
        "-70.6",
        "--attribute",
        "site=north=1",
        "--attribute",
        "owner=ops",
    ])
    .unwrap();
    let ClientCommand::Locations(LocationsCommand::Create(args)) = command else {
        panic!("{command:?}")
    };
    assert_eq!(args.latitude, Some(-33.9));
    assert_eq!(args.longitude, Some(-70.6));
    assert_eq!(
        args.attributes,
        vec![
            ("site".to_owned(), "north=1".to_owned()),
            ("owner".to_owned(), "ops".to_owned())
        ]
    );
    assert!(parse(&[
        "locations",
        "create",
        "--display-name",
        "x",
        "--attribute",
        "=v"
    ])
    .is_err());
}

#[test]
fn asset_filters_get_the_attributes_prefix() {
    let command = parse(&[
        "assets",
        "list",
        "--filter",
        "attributes.arc_display_type=IoT Edge device",
        "--filter",
        "iothub_status=enabled",
    ])
    .unwrap();
    let ClientCommand::Assets(AssetsCommand::List { filters, .. }) = command else {
        panic!("{command:?}")
    };
    assert_eq!(
        filters,
        vec![
            (
                "attributes.arc_display_type".to_owned(),
                "IoT Edge device".to_owned()
            ),
            ("attributes.iothub_status".to_owned(), "enabled".to_owned())
        ]
    );
    assert!(parse(&["assets", "list", "--filter", "novalue"]).is_err());
    assert!(parse(&["assets", "list", "--filter", "attributes.=x"]).is_err());
}

fn token_file() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "Authorization: Bearer t0ken\n").unwrap();
    file
}

#[tokio::test]
async fn import_refuses_two_secrets_on_stdin_before_any_request() {
    let command = parse(&[
        "import",
        "--display-name",
        "x",
        "--secret-file",
        "-",
        "--client-id",
        "app",
        "--client-secret-file",
        "-",
        "--url",
        "http://127.0.0.1:9",
    ])
    .unwrap();
    let mut stdin = "HostName=h;SharedAccessKeyName=p;SharedAccessKey=k".as_bytes();
    let mut io = Io {
        stdin: &mut stdin,
        env: &|_| None,
    };
    let err = execute(command, &mut io).await.err().unwrap();
    assert_eq!(err.exit_code(), exit_code::INVALID_INPUT);
    assert!(!err.to_string().contains("SharedAccessKey=k"));
}

#[tokio::test]
async fn import_without_any_secret_says_how_to_give_one() {
    let token = token_file();
    let command = parse(&[
        "import",
        "--display-name",
        "x",
        "--token-file",
        token.path().to_str().unwrap(),
        "--url",
        "http://127.0.0.1:9",
    ])
    .unwrap();
    let mut io = Io {
        stdin: &mut std::io::empty(),
        env: &|_| None,
    };
    let err = execute(command, &mut io).await.err().unwrap();
    assert_eq!(err.exit_code(), exit_code::INVALID_INPUT);
    assert!(err.to_string().contains("IOTHUBGDR_IOTHUB_SECRET"), "{err}");
}

#[tokio::test]
async fn a_bad_location_is_refused_before_reading_anything() {
    let command = parse(&[
        "import",
        "--display-name",
        "x",
        "--location",
        "paris",
        "--url",
        "http://127.0.0.1:9",
    ])
    .unwrap();
    let mut io = Io {
        stdin: &mut std::io::empty(),
        env: &|_| None,
    };
    let err = execute(command, &mut io).await.err().unwrap();
    assert_eq!(err.exit_code(), exit_code::INVALID_INPUT);
    assert!(err.to_string().contains("`paris`"));
}
