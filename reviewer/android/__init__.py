"""Android project files: AndroidManifest.xml, Gradle build scripts, version catalogs, res/ XML."""
