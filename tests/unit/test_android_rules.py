"""Manifest, Gradle, version catalog and resource rules: the wrong form fires, the right one does not."""

from __future__ import annotations

import textwrap

import pytest

from reviewer.android.gradle import check_build_script, check_version_catalog, scan
from reviewer.android.manifest import check_manifest
from reviewer.android.resources import check_resources
from reviewer.android.xml import XmlError

MANIFEST_HEAD = '<manifest xmlns:android="http://schemas.android.com/apk/res/android">'


def manifest(body: str) -> list[tuple[str, int]]:
    data = f"{MANIFEST_HEAD}\n{textwrap.dedent(body).strip()}\n</manifest>\n".encode()
    return [(f.rule_id, f.line) for f in check_manifest("app/src/main/AndroidManifest.xml", data)]


def test_manifest_application_flags() -> None:
    found = manifest(
        """
        <application
            android:allowBackup="true"
            android:debuggable="true"
            android:usesCleartextTraffic="true"
            android:label="@string/app_name">
        </application>
        """
    )
    assert sorted(found) == [
        ("manifest-allow-backup", 2),
        ("manifest-cleartext-traffic", 2),
        ("manifest-debuggable", 2),
    ]


def test_manifest_safe_application() -> None:
    found = manifest(
        """
        <application android:allowBackup="true" android:dataExtractionRules="@xml/data_extraction_rules"
            android:usesCleartextTraffic="false" android:networkSecurityConfig="@xml/network_security_config">
        </application>
        """
    )
    assert found == []


def test_intent_filter_without_exported() -> None:
    found = manifest(
        """
        <application>
            <activity android:name=".MainActivity">
                <intent-filter>
                    <action android:name="android.intent.action.MAIN" />
                    <category android:name="android.intent.category.LAUNCHER" />
                </intent-filter>
            </activity>
            <activity android:name=".SettingsActivity" />
            <receiver android:name=".BootReceiver" android:exported="false">
                <intent-filter><action android:name="android.intent.action.BOOT_COMPLETED" /></intent-filter>
            </receiver>
        </application>
        """
    )
    assert found == [("manifest-exported-missing", 3)]


def test_exported_without_permission() -> None:
    found = manifest(
        """
        <application>
            <service android:name=".sync.SyncService" android:exported="true" />
            <service android:name=".media.MusicService" android:exported="true"
                android:permission="android.permission.BIND_JOB_SERVICE" />
            <provider android:name=".data.Provider" android:authorities="x" android:exported="true" />
            <activity android:name=".DeepLinkActivity" android:exported="true">
                <intent-filter><action android:name="android.intent.action.VIEW" /></intent-filter>
            </activity>
        </application>
        """
    )
    assert found == [("manifest-exported-without-permission", 3), ("manifest-exported-without-permission", 6)]


def test_broken_manifest_raises_xml_error() -> None:
    with pytest.raises(XmlError):
        check_manifest("AndroidManifest.xml", b"<manifest><application></manifest>").__next__()


def gradle(text: str, catalog: bool = False) -> list[tuple[str, int, str | None]]:
    found = check_build_script("app/build.gradle.kts", textwrap.dedent(text).lstrip(), has_version_catalog=catalog)
    return [(f.rule_id, f.line, f.suggestion) for f in found]


def test_gradle_kts_release_build_problems() -> None:
    found = gradle(
        """
        android {
            buildTypes {
                debug {
                    isMinifyEnabled = false
                }
                release {
                    isMinifyEnabled = false
                    isDebuggable = true
                    proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"), "proguard-rules.pro")
                }
            }
        }
        """
    )
    assert found == [
        ("gradle-release-not-minified", 7, "            isMinifyEnabled = true"),
        ("gradle-release-debuggable", 8, ""),
    ]


def test_groovy_release_build_problems_and_comments_ignored() -> None:
    found = check_build_script(
        "app/build.gradle",
        textwrap.dedent(
            """
            android {
                buildTypes {
                    release {
                        // minifyEnabled true
                        minifyEnabled false /* TODO */
                        debuggable true
                    }
                }
            }
            """
        ),
        has_version_catalog=False,
    )
    assert [(f.rule_id, f.line) for f in found] == [
        ("gradle-release-not-minified", 6),
        ("gradle-release-debuggable", 7),
    ]


def test_dynamic_versions_and_http_repositories() -> None:
    found = gradle(
        """
        repositories {
            google()
            maven { url = uri("http://repo.example.com/maven2") }
            maven("https://jitpack.io")
        }
        dependencies {
            implementation("com.squareup.retrofit2:retrofit:2.+")
            implementation("io.coil-kt:coil-compose:latest.release")
            implementation("androidx.core:core-ktx:1.13.1")
        }
        """
    )
    assert [(rule, line) for rule, line, _ in found] == [
        ("gradle-http-repository", 3),
        ("gradle-dynamic-version", 7),
        ("gradle-dynamic-version", 8),
    ]
    assert found[0][2] == '    maven { url = uri("https://repo.example.com/maven2") }'


def test_hardcoded_versions_only_where_a_catalog_is_used() -> None:
    text = """
    dependencies {
        implementation(libs.androidx.core.ktx)
        implementation("com.jakewharton.timber:timber:5.0.1")
    }
    """
    assert [r for r, _, _ in gradle(text)] == ["gradle-hardcoded-version"]
    plain = 'dependencies {\n    implementation("com.jakewharton.timber:timber:5.0.1")\n}\n'
    assert gradle(plain) == []
    assert [r for r, _, _ in gradle(plain, catalog=True)] == ["gradle-hardcoded-version"]


def test_secrets_in_build_scripts() -> None:
    found = gradle(
        """
        android {
            defaultConfig {
                buildConfigField("String", "MAPS_API_KEY", "\\"AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW\\"")
                buildConfigField("String", "CLIENT_SECRET", "\\"q8Zt2-Lw9xPr4vYk\\"")
                buildConfigField("String", "API_KEY", "\\"${properties["apiKey"]}\\"")
            }
        }
        """
    )
    assert [(r, line) for r, line, _ in found] == [("hardcoded-secret", 3), ("hardcoded-secret", 4)]


def test_scanner_tracks_named_blocks() -> None:
    lines = list(scan('android {\n  buildTypes {\n    getByName("release") {\n      x = 1\n    }\n  }\n}\n'))
    assert lines[3].blocks == ("android", "buildTypes", "release")
    assert lines[6].blocks == ("android",)


def test_version_catalog_dynamic_versions() -> None:
    text = textwrap.dedent(
        """
        [versions]
        kotlin = "2.0.21"
        okhttp = "4.+"

        [libraries]
        retrofit = { module = "com.squareup.retrofit2:retrofit", version = "latest.release" }
        timber = "com.jakewharton.timber:timber:5.0.1"
        """
    )
    found = [(f.rule_id, f.line) for f in check_version_catalog("gradle/libs.versions.toml", text)]
    assert found == [("gradle-dynamic-version", 4), ("gradle-dynamic-version", 7)]


def test_resource_secrets() -> None:
    data = textwrap.dedent(
        """
        <resources>
            <string name="app_name">Now in Android</string>
            <string name="google_maps_key">AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW</string>
            <string name="stripe_secret">sk_live_51HxQ2eKd8Jd7fFz0aBcDeFgH</string>
            <string name="password_hint">Enter your password</string>
        </resources>
        """
    ).encode()
    found = [(f.rule_id, f.line) for f in check_resources("app/src/main/res/values/keys.xml", data)]
    assert found == [("hardcoded-secret", 4), ("hardcoded-secret", 5)]
