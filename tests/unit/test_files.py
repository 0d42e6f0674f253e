"""Which files are reviewed (classify, is_test_source) and the repository's `.github/ai-review.yml` (RepoConfig)."""

from __future__ import annotations

import pytest

from reviewer.files import (
    CONFIG_PATH,
    FileKind,
    PathsConfig,
    RepoConfig,
    RulesConfig,
    classify,
    is_test_source,
    parse_repo_config,
)
from reviewer.models import Severity

NOT_REVIEWABLE = "not a Kotlin, Java, Gradle, manifest, resource or ProGuard file"
DEFAULTS_USED = "; the defaults were used."


# --- classify ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("app/src/main/java/com/example/MainActivity.kt", FileKind.KOTLIN),
        ("MainActivity.kt", FileKind.KOTLIN),
        ("app/src/main/kotlin/Upper.KT", FileKind.KOTLIN),
        ("buildSrc/src/main/kotlin/Deps.kt", FileKind.KOTLIN),  # buildSrc/ is not build/
        ("app\\src\\main\\java\\Windows.kt", FileKind.KOTLIN),
        ("/app/src/main/java/Leading.kt", FileKind.KOTLIN),
        ("scripts/release.main.kts", FileKind.KOTLIN_SCRIPT),
        ("app/src/main/java/com/example/Legacy.java", FileKind.JAVA),
        ("build.gradle", FileKind.GRADLE_GROOVY),
        ("app/build.gradle", FileKind.GRADLE_GROOVY),
        ("settings.gradle", FileKind.GRADLE_GROOVY),
        ("build.gradle.kts", FileKind.GRADLE_KTS),
        ("feature/login/build.gradle.kts", FileKind.GRADLE_KTS),
        ("settings.gradle.kts", FileKind.GRADLE_KTS),
        ("gradle/libs.versions.toml", FileKind.VERSION_CATALOG),
        ("build-logic/gradle/plugins.versions.toml", FileKind.VERSION_CATALOG),
        ("app/src/main/AndroidManifest.xml", FileKind.MANIFEST),
        ("AndroidManifest.xml", FileKind.MANIFEST),
        ("app/src/main/res/values/strings.xml", FileKind.RESOURCE_XML),
        ("res/layout/x.xml", FileKind.RESOURCE_XML),
        ("app/src/main/res/values-night-v31/themes.xml", FileKind.RESOURCE_XML),
        ("app/src/main/res/xml/network_security_config.xml", FileKind.RESOURCE_XML),
        ("app/proguard-rules.pro", FileKind.PROGUARD),
        ("proguard-rules.pro", FileKind.PROGUARD),
        ("app/proguard-android-optimize.txt", FileKind.PROGUARD),
        ("app/ProGuard-Rules.pro", FileKind.PROGUARD),
    ],
)
def test_classify_reviewable(path: str, kind: FileKind) -> None:
    assert classify(path) == (kind, "")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("app/build/generated/source/buildConfig/debug/BuildConfig.java", "generated or build output (build/)"),
        ("build/tmp/Main.kt", "generated or build output (build/)"),
        ("app/src/main/generated/Dao_Impl.kt", "generated or build output (generated/)"),
        ("generated/Api.kt", "generated or build output (generated/)"),
        (".idea/workspace.xml", "generated or build output (.idea/)"),
        ("app/.idea/codeStyles/Project.xml", "generated or build output (.idea/)"),
        (".gradle/8.7/checksums/checksums.lock", "generated or build output (.gradle/)"),
        ("app/build/outputs/apk/debug/app-debug.apk", "generated or build output (build/)"),  # folder wins
        ("app/src/main/res/drawable/logo.png", "binary file"),
        ("app/src/main/res/mipmap-hdpi/ic_launcher.PNG", "binary file"),
        ("gradle/wrapper/gradle-wrapper.jar", "binary file"),
        ("app/libs/vendor.jar", "binary file"),
        ("app/src/main/jniLibs/arm64-v8a/libnative.so", "binary file"),
        ("app/release.keystore", "binary file"),
        ("gradle.lockfile", "lock file"),
        ("app/gradle.lockfile", "lock file"),
        ("buildscript-gradle.lockfile", "lock file"),
        ("package-lock.json", "lock file"),
        ("yarn.lock", "lock file"),
        ("README.md", NOT_REVIEWABLE),
        ("docs/guide.md", NOT_REVIEWABLE),
        ("libs.versions.toml", NOT_REVIEWABLE),  # a version catalog lives in gradle/
        ("app/src/main/res/raw/data.json", NOT_REVIEWABLE),
        ("app/src/main/assets/config.xml", NOT_REVIEWABLE),  # XML outside res/<folder>/
        ("app/src/main/res/values/nested/deep.xml", NOT_REVIEWABLE),
        ("androidManifest.xml", NOT_REVIEWABLE),  # the manifest's name is case-sensitive
        ("gradle.properties", NOT_REVIEWABLE),
        ("", NOT_REVIEWABLE),
    ],
)
def test_classify_skipped(path: str, reason: str) -> None:
    assert classify(path) == (None, reason)


# --- is_test_source ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("app/src/test/java/com/example/Helper.kt", True),
        ("app/src/androidTest/java/com/example/Screen.kt", True),
        ("app/src/testFixtures/kotlin/Fakes.kt", True),
        ("shared/src/commonTest/kotlin/Shared.kt", True),  # src/<anything>Test
        ("shared/src/androidUnitTest/kotlin/Shared.kt", True),
        ("app/src/integrationTest/kotlin/Flow.kt", True),
        ("src/test/A.kt", True),
        ("app\\src\\test\\java\\Helper.kt", True),
        # Variant test source sets are NOT recognised by the regex: only test, androidTest, testFixtures and *Test.
        ("app/src/testDebug/java/com/example/Helper.kt", True),
        ("app/src/androidTestDebug/java/com/example/Screen.kt", True),
        ("app/src/main/java/com/example/MainActivityTest.kt", True),  # the name alone is enough
        ("LoginViewModelTests.java", True),
        ("app/src/main/java/RepoSpec.kt", True),
        ("Test.kt", True),
        ("app/src/main/java/com/example/MainActivity.kt", False),
        ("app/src/main/java/com/example/TestUtils.kt", False),
        ("app/src/main/java/com/example/Contest.kt", False),
        ("app/src/main/java/com/example/LoginTest.kts", False),
        ("app/src/main/java/com/example/LoginTest.xml", False),
        ("app/src/latest/java/A.kt", False),
        ("app/test/A.kt", False),  # a test folder outside src/
        ("src/test", False),  # the folder itself, no trailing slash
    ],
)
def test_is_test_source(path: str, expected: bool) -> None:
    assert is_test_source(path) is expected


# --- parse_repo_config ------------------------------------------------------------------------------------------------


def assert_defaults(config: RepoConfig) -> None:
    assert config == RepoConfig()
    assert config.enabled is True
    assert config.review_drafts is False
    assert config.paths == PathsConfig(ignore=(), include=())
    assert config.min_severity is Severity.NIT
    assert config.max_comments == 25
    assert config.rules == RulesConfig(disable=())
    assert config.instructions == ""
    assert config.fail_on is Severity.BLOCKER
    assert config.filter == "added"


@pytest.mark.parametrize("text", [None, "", "   \n\n", "# only a comment\n", "---\n", "~\n", "null"])
def test_no_config_gives_defaults_and_no_error(text: str | None) -> None:
    config, error = parse_repo_config(text)
    assert error is None
    assert_defaults(config)


def test_full_valid_config() -> None:
    text = """\
enabled: false
review_drafts: true
paths:
  ignore:
    - "**/legacy/**"
    - "*.java"
  include: ["app/**", "core/**"]
min_severity: minor
max_comments: 10
rules:
  disable: [KT001, AND-004]
instructions: |
  We use Hilt, not Koin.
  Prefer StateFlow over LiveData.
fail_on: major
filter: diff_context
"""
    config, error = parse_repo_config(text)
    assert error is None
    assert config.enabled is False
    assert config.review_drafts is True
    assert config.paths == PathsConfig(ignore=("**/legacy/**", "*.java"), include=("app/**", "core/**"))
    assert config.min_severity is Severity.MINOR
    assert config.max_comments == 10
    assert config.rules.disable == ("KT001", "AND-004")
    assert config.instructions == "We use Hilt, not Koin.\nPrefer StateFlow over LiveData.\n"
    assert config.fail_on is Severity.MAJOR
    assert config.filter == "diff_context"


def test_rules_disable_as_a_single_string() -> None:
    config, error = parse_repo_config("rules:\n  disable: KT001\n")
    assert error is None
    assert config.rules.disable == ("KT001",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("never", "never"), ("blocker", Severity.BLOCKER), ("nit", Severity.NIT), ("minor", Severity.MINOR)],
)
def test_fail_on(value: str, expected: Severity | str) -> None:
    config, error = parse_repo_config(f"fail_on: {value}\n")
    assert error is None
    assert config.fail_on == expected


@pytest.mark.parametrize("mode", ["added", "diff_context", "file"])
def test_filter_modes(mode: str) -> None:
    config, error = parse_repo_config(f"filter: {mode}\n")
    assert (config.filter, error) == (mode, None)


@pytest.mark.parametrize("value", [0, 100])
def test_max_comments_bounds_are_inclusive(value: int) -> None:
    config, error = parse_repo_config(f"max_comments: {value}\n")
    assert (config.max_comments, error) == (value, None)


def test_invalid_yaml() -> None:
    config, error = parse_repo_config("enabled: [true\npaths: {ignore: \n")
    assert_defaults(config)
    assert error is not None
    assert error.startswith(f"{CONFIG_PATH} is not valid YAML (")
    assert error.endswith(f"){DEFAULTS_USED}")


def test_yaml_tags_that_run_code_are_refused() -> None:
    config, error = parse_repo_config("instructions: !!python/object/apply:os.system ['true']\n")
    assert_defaults(config)
    assert error is not None
    assert error.startswith(f"{CONFIG_PATH} is not valid YAML (")


@pytest.mark.parametrize("text", ["- enabled\n- review_drafts\n", "just some words\n", "42\n", "true\n"])
def test_top_level_not_a_mapping(text: str) -> None:
    config, error = parse_repo_config(text)
    assert_defaults(config)
    assert error == f"{CONFIG_PATH} must be a mapping of settings{DEFAULTS_USED}"


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("max_coments: 5\n", "`max_coments`: Extra inputs are not permitted"),
        ("paths:\n  ignor: ['*.md']\n", "`paths.ignor`: Extra inputs are not permitted"),
        ("rules:\n  disabled: KT001\n", "`rules.disabled`: Extra inputs are not permitted"),
    ],
)
def test_unknown_key_is_an_error_naming_it(text: str, problems: str) -> None:
    config, error = parse_repo_config(text)
    assert_defaults(config)
    assert error == f"{CONFIG_PATH} has invalid settings ({problems}){DEFAULTS_USED}"


def test_a_typo_discards_the_valid_settings_too() -> None:
    config, error = parse_repo_config("max_comments: 5\nenabeld: false\n")
    assert_defaults(config)
    assert error == f"{CONFIG_PATH} has invalid settings (`enabeld`: Extra inputs are not permitted){DEFAULTS_USED}"


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        (
            "max_comments: lots\n",
            "`max_comments`: Input should be a valid integer, unable to parse string as an integer",
        ),
        ("min_severity: critical\n", "`min_severity`: Input should be 'blocker', 'major', 'minor' or 'nit'"),
        ("max_comments: 101\n", "`max_comments`: Input should be less than or equal to 100"),
        ("max_comments: -1\n", "`max_comments`: Input should be greater than or equal to 0"),
        ("filter: everything\n", "`filter`: Input should be 'added', 'diff_context' or 'file'"),
        ("enabled: maybe\n", "`enabled`: Input should be a valid boolean, unable to interpret input"),
        ("instructions: 12\n", "`instructions`: Input should be a valid string"),
        (f"instructions: {'x' * 4001}\n", "`instructions`: String should have at most 4000 characters"),
        (
            "max_comments: lots\nmin_severity: critical\n",
            # every problem, in the order the settings are declared
            "`min_severity`: Input should be 'blocker', 'major', 'minor' or 'nit'; "
            "`max_comments`: Input should be a valid integer, unable to parse string as an integer",
        ),
    ],
)
def test_wrong_type_is_an_error(text: str, problems: str) -> None:
    config, error = parse_repo_config(text)
    assert_defaults(config)
    assert error == f"{CONFIG_PATH} has invalid settings ({problems}){DEFAULTS_USED}"


def test_wrong_fail_on_names_the_key() -> None:
    config, error = parse_repo_config("fail_on: sometimes\n")
    assert_defaults(config)
    assert error is not None
    assert error.startswith(f"{CONFIG_PATH} has invalid settings (`fail_on")
    assert "'never'" in error
    assert error.endswith(DEFAULTS_USED)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("instructions: 2024-13-45\n", id="impossible-date"),
        pytest.param("max_comments: !!int lots\n", id="bad-int-tag"),
        pytest.param("paths: " + "[" * 2000 + "]" * 2000 + "\n", id="deep-nesting"),
    ],
)
def test_yaml_that_fails_while_being_built_gives_defaults_and_a_message(text: str) -> None:
    # The contract: a broken config never breaks the review; the defaults are used and the bot says why.
    config, error = parse_repo_config(text)
    assert_defaults(config)
    assert error is not None
    assert error.startswith(f"{CONFIG_PATH} ")
    assert error.endswith(DEFAULTS_USED)


def test_config_is_frozen() -> None:
    config, _ = parse_repo_config("max_comments: 3\n")
    with pytest.raises(ValueError, match="frozen"):
        config.max_comments = 4


# --- RepoConfig.wants -------------------------------------------------------------------------------------------------


def config_with(ignore: tuple[str, ...] = (), include: tuple[str, ...] = ()) -> RepoConfig:
    return RepoConfig(paths=PathsConfig(ignore=ignore, include=include))


def test_wants_everything_by_default() -> None:
    assert RepoConfig().wants("app/src/main/java/Main.kt")
    assert RepoConfig().wants("README.md")


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        ("legacy/Old.kt", False),
        ("app/legacy/Old.kt", False),
        ("app/src/main/java/legacy/deep/Old.kt", False),
        ("app/legacyx/New.kt", True),
        ("app/mylegacy/New.kt", True),
        ("legacy.kt", True),
        ("app/src/main/java/Main.kt", True),
    ],
)
def test_wants_double_star_folder(path: str, wanted: bool) -> None:
    assert config_with(ignore=("**/legacy/**",)).wants(path) is wanted


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        ("Main.java", False),
        ("app/src/main/java/com/example/Main.java", False),  # a bare name pattern matches in any folder
        ("app/src/main/java/com/example/Main.kt", True),
        ("java/Main.kt", True),
        ("Main.java.kt", True),
        ("Main.JAVA", True),  # case-sensitive
    ],
)
def test_wants_bare_name_pattern(path: str, wanted: bool) -> None:
    assert config_with(ignore=("*.java",)).wants(path) is wanted


@pytest.mark.parametrize(
    ("pattern", "path", "wanted"),
    [
        ("docs/", "docs/guide.md", False),
        ("docs/", "docs/api/v1/index.md", False),
        ("docs/", "docsite/index.md", True),
        ("docs/", "README.md", True),
        ("/docs/", "docs/guide.md", False),  # a leading slash changes nothing
        ("  docs/  ", "docs/guide.md", False),  # surrounding spaces are stripped
        ("app/src/*.kt", "app/src/A.kt", False),  # `*` stays inside one folder
        ("app/src/*.kt", "app/src/x/A.kt", True),
        ("app/src/?.kt", "app/src/A.kt", False),
        ("app/src/?.kt", "app/src/AB.kt", True),
        ("**/*Test.kt", "FooTest.kt", False),  # `**/` may match no folder at all
        ("**/*Test.kt", "a/b/FooTest.kt", False),
        ("app/**", "app/src/main/A.kt", False),
        ("app/**", "core/src/main/A.kt", True),
    ],
)
def test_wants_path_patterns(pattern: str, path: str, wanted: bool) -> None:
    assert config_with(ignore=(pattern,)).wants(path) is wanted


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        ("app/src/main/java/Main.kt", True),
        ("core/data/Repo.kt", True),
        ("lib/Other.kt", False),  # not included
        ("app/legacy/Old.kt", False),  # included, then ignored
        ("core/src/Gen.java", False),  # included, then ignored by a bare name
        ("build.gradle.kts", False),
    ],
)
def test_wants_include_and_ignore_together(path: str, wanted: bool) -> None:
    config = config_with(ignore=("**/legacy/**", "*.java"), include=("app/**", "core/"))
    assert config.wants(path) is wanted


def test_wants_from_a_parsed_config() -> None:
    config, error = parse_repo_config(
        "paths:\n  ignore: ['docs/', '*.md']\n  include: ['**/*.kt', '*.md', 'docs/**']\n"
    )
    assert error is None
    assert config.wants("app/Main.kt")
    assert not config.wants("app/Main.java")
    assert not config.wants("README.md")
    assert not config.wants("docs/Sample.kt")


@pytest.mark.parametrize(
    ("path", "reviewable"),
    [
        ("app/src/main/java/com/acme/build/BuildInfo.kt", True),  # a package named build is source
        ("app/build/tmp/kapt3/stubs/Foo.kt", False),
        ("lib/consumer-rules.pro", True),
    ],
)
def test_build_packages_and_consumer_rules(path: str, reviewable: bool) -> None:
    assert (classify(path)[0] is not None) is reviewable


@pytest.mark.parametrize(
    ("pattern", "path", "wanted"),
    [("docs/", "app/docs/guide.md", False), ("/docs/", "app/docs/guide.md", True), ("app/docs/", "docs/x.md", True)],
)
def test_folder_patterns_match_at_any_depth_unless_anchored(pattern: str, path: str, wanted: bool) -> None:
    config = RepoConfig(paths={"ignore": (pattern,)})  # type: ignore[arg-type]
    assert config.wants(path) is wanted
