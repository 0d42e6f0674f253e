"""Each Kotlin rule fires on the wrong form and stays quiet on the right one, on realistic Android code.

The snippets follow the shapes of real Android code (ViewModels, Compose screens, repositories); whole
real files from open-source projects are exercised in test_real_fixtures.py.
"""

from __future__ import annotations

import textwrap

import pytest

from reviewer.kotlin import ALL_RULES, check_kotlin
from reviewer.models import Finding

MAIN = "app/src/main/java/com/example/app/Feature.kt"
TEST = "app/src/test/java/com/example/app/FeatureTest.kt"


def run(code: str, path: str = MAIN) -> list[Finding]:
    return list(check_kotlin(path, textwrap.dedent(code).encode(), is_test="/src/test/" in path))


def ids(code: str, path: str = MAIN) -> list[str]:
    return [f.rule_id for f in run(code, path)]


def only(rule_id: str, code: str, path: str = MAIN) -> list[Finding]:
    return [f for f in run(code, path) if f.rule_id == rule_id]


def test_rule_ids_are_unique_and_documented() -> None:
    seen = [r.rule.id for r in ALL_RULES]
    assert len(seen) == len(set(seen))
    for kotlin_rule in ALL_RULES:
        assert kotlin_rule.rule.title
        assert len(kotlin_rule.rule.rationale) > 80


# --- not-null-assertion -------------------------------------------------------------------------------------


def test_not_null_assertion_fires_with_the_operand() -> None:
    found = only(
        "not-null-assertion",
        """
        class ProfileFragment : Fragment() {
            private var _binding: FragmentProfileBinding? = null
            private val binding get() = _binding!!
        }
        """,
    )
    assert [(f.line, f.end_line) for f in found] == [(4, 4)]
    assert "`_binding!!`" in found[0].message


@pytest.mark.parametrize(
    "code",
    [
        'fun name(user: User?) = user?.name ?: "anonymous"',
        "fun name(user: User?) = user?.let { it.name }",
        'fun name(user: User?) = requireNotNull(user) { "user is loaded before the screen" }.name',
        "fun isHidden(flag: Boolean) = !flag",
    ],
)
def test_not_null_assertion_quiet_on_safe_forms(code: str) -> None:
    assert "not-null-assertion" not in ids(code)


def test_not_null_assertion_quiet_in_tests() -> None:
    assert "not-null-assertion" not in ids("fun t() { assertEquals(1, repo.cache!!.size) }", TEST)


# --- global-scope -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("builder", ["launch", "async"])
def test_global_scope_fires(builder: str) -> None:
    found = only(
        "global-scope",
        f"""
        class SyncManager(private val api: Api) {{
            fun refresh() {{
                GlobalScope.{builder}(Dispatchers.IO) {{
                    api.sync()
                }}
            }}
        }}
        """,
    )
    assert [f.line for f in found] == [4]
    assert f"GlobalScope.{builder}" in found[0].message


def test_global_scope_quiet_on_owned_scopes() -> None:
    code = """
    class SyncViewModel(private val api: Api, private val appScope: CoroutineScope) : ViewModel() {
        fun refresh() { viewModelScope.launch { api.sync() } }
        fun upload() { appScope.launch { api.upload() } }
    }
    """
    assert "global-scope" not in ids(code)


# --- run-blocking -------------------------------------------------------------------------------------------


def test_run_blocking_fires_in_production_code() -> None:
    found = only(
        "run-blocking",
        """
        class TokenInterceptor(private val store: TokenStore) : Interceptor {
            override fun intercept(chain: Interceptor.Chain): Response {
                val token = runBlocking { store.token.first() }
                return chain.proceed(chain.request().newBuilder().header("Authorization", token).build())
            }
        }
        """,
    )
    assert [f.line for f in found] == [4]


@pytest.mark.parametrize(
    ("code", "path"),
    [
        ('fun main() = runBlocking { launch { println("hi") } }', MAIN),
        ("class RepoTest { @Test fun loads() = runBlocking { assertEquals(1, repo.load()) } }", TEST),
        ("@Preview @Composable fun P() { val d = runBlocking { fake.load() }; Screen(d) }", MAIN),
    ],
)
def test_run_blocking_quiet_in_main_tests_and_previews(code: str, path: str) -> None:
    assert "run-blocking" not in ids(code, path)


# --- thread-sleep-in-coroutine ------------------------------------------------------------------------------


def test_thread_sleep_in_suspend_function_with_delay_suggestion() -> None:
    found = only(
        "thread-sleep-in-coroutine",
        """
        class Poller(private val api: Api) {
            suspend fun waitForJob(id: String) {
                while (!api.isDone(id)) {
                    Thread.sleep(500)
                }
            }
        }
        """,
    )
    assert [f.line for f in found] == [5]
    assert found[0].suggestion == "            delay(500)"


def test_thread_sleep_in_launch_lambda() -> None:
    code = "fun start(scope: CoroutineScope) { scope.launch { Thread.sleep(1_000); tick() } }"
    assert ids(code).count("thread-sleep-in-coroutine") == 1


def test_thread_sleep_quiet_on_delay_and_plain_threads() -> None:
    code = """
    suspend fun backoff(attempt: Int) { delay(100L * attempt) }
    fun blockingRetry() { Thread.sleep(100) }
    """
    assert "thread-sleep-in-coroutine" not in ids(code)


# --- swallowed-cancellation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("caught", ["Exception", "Throwable", "CancellationException"])
def test_catching_cancellation_in_suspend_code_fires(caught: str) -> None:
    found = only(
        "swallowed-cancellation",
        f"""
        class NewsRepository(private val api: NewsApi) {{
            suspend fun refresh(): Boolean {{
                return try {{
                    api.fetch()
                    true
                }} catch (e: {caught}) {{
                    Log.w(TAG, "refresh failed", e)
                    false
                }}
            }}
        }}
        """,
    )
    assert [f.line for f in found] == [7]


@pytest.mark.parametrize(
    "handler",
    [
        "catch (e: CancellationException) { throw e } catch (e: Exception) { false }",
        "catch (e: Exception) { if (e is CancellationException) throw e; false }",
        "catch (e: Exception) { currentCoroutineContext().ensureActive(); false }",
        "catch (e: IOException) { false }",
    ],
)
def test_catching_cancellation_quiet_when_rethrown_or_specific(handler: str) -> None:
    code = f"suspend fun refresh(): Boolean = try {{ api.fetch(); true }} {handler}"
    assert "swallowed-cancellation" not in ids(code)


def test_catching_exception_in_plain_function_is_not_a_cancellation_problem() -> None:
    code = "fun parse(s: String): Int? = try { s.toInt() } catch (e: Exception) { null }"
    assert "swallowed-cancellation" not in ids(code)


# --- empty-catch --------------------------------------------------------------------------------------------


def test_empty_catch_fires() -> None:
    found = only(
        "empty-catch",
        """
        fun readVersion(context: Context): String? {
            try {
                return context.packageManager.getPackageInfo(context.packageName, 0).versionName
            } catch (e: PackageManager.NameNotFoundException) {
            }
            return null
        }
        """,
    )
    assert [f.line for f in found] == [5]


@pytest.mark.parametrize(
    "handler",
    [
        "catch (ignored: NumberFormatException) {}",
        "catch (e: NumberFormatException) {\n    // not a number: keep the default\n}",
        'catch (e: NumberFormatException) { Log.w(TAG, "bad", e) }',
    ],
)
def test_empty_catch_quiet_when_intended_or_handled(handler: str) -> None:
    assert "empty-catch" not in ids(f"fun p(s: String) {{ try {{ s.toInt() }} {handler} }}")


# --- print-in-production ------------------------------------------------------------------------------------


def test_println_and_print_stack_trace_fire() -> None:
    found = only(
        "print-in-production",
        """
        class Downloader {
            fun save(file: File) {
                try {
                    file.writeBytes(fetch())
                    println("saved ${file.name}")
                } catch (e: IOException) {
                    e.printStackTrace()
                }
            }
        }
        """,
    )
    assert [f.line for f in found] == [6, 8]
    assert "e.printStackTrace()" in found[1].message


def test_println_quiet_in_main_and_tests() -> None:
    assert "print-in-production" not in ids('fun main() { println("tool output") }')
    assert "print-in-production" not in ids('class T { @Test fun t() { println("debug") } }', TEST)


# --- hardcoded-dispatcher -----------------------------------------------------------------------------------


def test_hardcoded_dispatcher_in_class_fires() -> None:
    found = only(
        "hardcoded-dispatcher",
        """
        class PhotoRepository(private val dao: PhotoDao) {
            suspend fun photos() = withContext(Dispatchers.IO) { dao.all() }
        }
        """,
    )
    assert [f.line for f in found] == [3]


@pytest.mark.parametrize(
    "code",
    [
        "class PhotoRepository(private val dao: PhotoDao, private val io: CoroutineDispatcher = Dispatchers.IO)",
        """
        @Module @InstallIn(SingletonComponent::class)
        object DispatchersModule {
            @Provides @IoDispatcher fun providesIoDispatcher(): CoroutineDispatcher = Dispatchers.IO
        }
        """,
        "suspend fun load(dao: PhotoDao) = withContext(Dispatchers.IO) { dao.all() }",
    ],
)
def test_hardcoded_dispatcher_quiet_on_injection_points(code: str) -> None:
    assert "hardcoded-dispatcher" not in ids(code)


# --- collect-without-lifecycle ------------------------------------------------------------------------------


def test_collect_in_lifecycle_scope_fires() -> None:
    found = only(
        "collect-without-lifecycle",
        """
        class NewsFragment : Fragment() {
            override fun onViewCreated(view: View, savedInstanceState: Bundle?) {
                viewLifecycleOwner.lifecycleScope.launch {
                    viewModel.uiState.collect { state -> render(state) }
                }
            }
        }
        """,
    )
    assert [f.line for f in found] == [5]


def test_launch_in_lifecycle_scope_fires() -> None:
    code = "fun bind() { viewModel.events.onEach { show(it) }.launchIn(lifecycleScope) }"
    assert ids(code).count("collect-without-lifecycle") == 1


@pytest.mark.parametrize(
    "body",
    [
        "lifecycleScope.launch { repeatOnLifecycle(Lifecycle.State.STARTED) { vm.uiState.collect { render(it) } } }",
        "lifecycleScope.launch { vm.uiState.flowWithLifecycle(lifecycle).collect { render(it) } }",
        "viewModelScope.launch { repo.updates.collect { cache(it) } }",
    ],
)
def test_collect_quiet_when_lifecycle_aware(body: str) -> None:
    assert "collect-without-lifecycle" not in ids(f"fun bind() {{ {body} }}")


# --- static-context-leak ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "class App : Application() {\n    companion object {\n        lateinit var context: Context\n    }\n}",
        "object Toaster { var activity: Activity? = null }",
        "private var currentView: TextView? = null",
    ],
)
def test_static_context_fires(code: str) -> None:
    assert ids(code).count("static-context-leak") == 1


@pytest.mark.parametrize(
    "code",
    [
        "class App : Application() { companion object { lateinit var instance: Application } }",
        "object Cache { var ref: WeakReference<Activity>? = null }",
        "class Presenter(private val activity: Activity)",
        "class Screen : Activity() { private var root: View? = null }",
    ],
)
def test_static_context_quiet_on_owned_or_weak_references(code: str) -> None:
    assert "static-context-leak" not in ids(code)


# --- viewmodel-context --------------------------------------------------------------------------------------


def test_viewmodel_holding_context_fires() -> None:
    code = """
    class SettingsViewModel(private val context: Context, private val repo: SettingsRepository) : ViewModel() {
        private var host: Activity? = null
    }
    """
    found = only("viewmodel-context", code)
    assert [f.line for f in found] == [2, 3]


@pytest.mark.parametrize(
    "code",
    [
        "@HiltViewModel class A @Inject constructor(@ApplicationContext private val context: Context) : ViewModel()",
        "class A(application: Application) : AndroidViewModel(application)",
        "class A(context: Context) : ViewModel() { private val name = context.getString(R.string.app_name) }",
        "class Presenter(private val context: Context)",
    ],
)
def test_viewmodel_context_quiet(code: str) -> None:
    assert "viewmodel-context" not in ids(code)


# --- log-sensitive-data -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        'Log.d(TAG, "login ok, token=$authToken")',
        'Log.i(TAG, "user ${user.password}")',
        'Log.e(TAG, "key: " + apiKey)',
        'Timber.d("refresh %s", refreshToken)',
    ],
)
def test_log_sensitive_data_fires(call: str) -> None:
    assert ids(f"fun onLogin() {{ {call} }}").count("log-sensitive-data") == 1


@pytest.mark.parametrize(
    "call",
    [
        'Log.d(TAG, "token refresh scheduled")',
        'Log.d(TAG, "user ${user.id} logged in")',
        'Log.w(TAG, "password reset failed", e)',
    ],
)
def test_log_sensitive_data_quiet_on_plain_text(call: str) -> None:
    assert "log-sensitive-data" not in ids(f"fun onLogin() {{ {call} }}")


# --- compose rules ------------------------------------------------------------------------------------------


def test_mutable_state_without_remember_fires_with_suggestion() -> None:
    found = only(
        "compose-state-without-remember",
        """
        @Composable
        fun Counter(modifier: Modifier = Modifier) {
            var count by mutableStateOf(0)
            Button(onClick = { count++ }, modifier = modifier) { Text("Clicked $count times") }
        }
        """,
    )
    assert [f.line for f in found] == [4]
    assert found[0].suggestion == "    var count by remember { mutableStateOf(0) }"


@pytest.mark.parametrize(
    "code",
    [
        "@Composable fun C() { var count by remember { mutableStateOf(0) } }",
        '@Composable fun C() { var text by rememberSaveable { mutableStateOf("") } }',
        'class FormState { var name by mutableStateOf("") }',
        "class VM : ViewModel() { val items = mutableStateListOf<Item>() }",
    ],
)
def test_mutable_state_quiet_when_remembered_or_outside_composables(code: str) -> None:
    assert "compose-state-without-remember" not in ids(code)


def test_launch_in_composable_body_fires() -> None:
    found = only(
        "compose-launch-in-body",
        """
        @Composable
        fun Feed(viewModel: FeedViewModel) {
            val scope = rememberCoroutineScope()
            scope.launch { viewModel.refresh() }
            Column { FeedList(viewModel.items) }
        }
        """,
    )
    assert [f.line for f in found] == [5]


@pytest.mark.parametrize(
    "statement",
    [
        "LaunchedEffect(Unit) { launch { viewModel.refresh() } }",
        'Button(onClick = { scope.launch { viewModel.refresh() } }) { Text("Refresh") }',
        "UserInput(resetScroll = { scope.launch { state.scrollToItem(0) } })",
    ],
)
def test_launch_in_effects_and_handlers_is_fine(statement: str) -> None:
    code = f"@Composable fun Feed(viewModel: FeedViewModel) {{ val scope = rememberCoroutineScope(); {statement} }}"
    assert "compose-launch-in-body" not in ids(code)


def test_collect_as_state_fires_with_suggestion() -> None:
    found = only(
        "collect-as-state",
        """
        @Composable
        fun Cart(viewModel: CartViewModel) {
            val orderLines by viewModel.orderLines.collectAsState()
        }
        """,
    )
    assert found[0].suggestion == "    val orderLines by viewModel.orderLines.collectAsStateWithLifecycle()"


def test_collect_as_state_quiet_with_lifecycle_and_in_common_code() -> None:
    code = "@Composable fun Cart(vm: CartViewModel) { val lines by vm.orderLines.collectAsState() }"
    assert "collect-as-state" not in ids(
        "@Composable fun Cart(vm: CartViewModel) { val l by vm.orderLines.collectAsStateWithLifecycle() }"
    )
    assert "collect-as-state" not in ids(code, "shared/src/commonMain/kotlin/Cart.kt")


# --- security -----------------------------------------------------------------------------------------------


def test_webview_bridge_with_javascript_fires() -> None:
    found = only(
        "webview-js-interface",
        """
        class HelpActivity : AppCompatActivity() {
            override fun onCreate(savedInstanceState: Bundle?) {
                super.onCreate(savedInstanceState)
                webView.settings.javaScriptEnabled = true
                webView.addJavascriptInterface(HelpBridge(this), "Android")
                webView.loadUrl(intent.getStringExtra("url")!!)
            }
        }
        """,
    )
    assert [f.line for f in found] == [6]


def test_webview_bridge_fires_with_the_setter_form() -> None:
    code = 'fun s(w: WebView) { w.settings.setJavaScriptEnabled(true); w.addJavascriptInterface(B(), "b") }'
    assert ids(code).count("webview-js-interface") == 1


def test_webview_without_bridge_or_javascript_is_fine() -> None:
    assert "webview-js-interface" not in ids("fun s(w: WebView) { w.settings.javaScriptEnabled = true }")
    assert "webview-js-interface" not in ids('fun s(w: WebView) { w.addJavascriptInterface(B(), "b") }')


def test_pending_intent_without_mutability_flag_fires() -> None:
    found = only(
        "pending-intent-mutability",
        """
        fun notify(context: Context) {
            val intent = Intent(context, MainActivity::class.java)
            val pending = PendingIntent.getActivity(context, 0, intent, PendingIntent.FLAG_UPDATE_CURRENT)
        }
        """,
    )
    assert len(found) == 1
    assert found[0].suggestion == (
        "    val pending = PendingIntent.getActivity(context, 0, intent, "
        "PendingIntent.FLAG_UPDATE_CURRENT or PendingIntent.FLAG_IMMUTABLE)"
    )


def test_pending_intent_with_zero_flags_suggests_immutable() -> None:
    found = only("pending-intent-mutability", "val p = PendingIntent.getBroadcast(ctx, 1, intent, 0)")
    assert found[0].suggestion == "val p = PendingIntent.getBroadcast(ctx, 1, intent, PendingIntent.FLAG_IMMUTABLE)"


@pytest.mark.parametrize(
    "flags",
    [
        "PendingIntent.FLAG_IMMUTABLE",
        "PendingIntent.FLAG_UPDATE_CURRENT or PendingIntent.FLAG_IMMUTABLE",
        "PendingIntent.FLAG_MUTABLE",
        "pendingFlags",
    ],
)
def test_pending_intent_with_flag_or_unknown_flags_is_fine(flags: str) -> None:
    assert "pending-intent-mutability" not in ids(f"val p = PendingIntent.getActivity(ctx, 0, intent, {flags})")


@pytest.mark.parametrize(
    "code",
    [
        'const val MAPS_API_KEY = "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW"',
        'private const val CLIENT_SECRET = "q8Zt2-Lw9xPr4vYk"',
        'val client = Client(apiKey = "sk-proj-4f8G2k9LmN0pQ7rS1tU3vW5xY6zA8bC0dE")',
    ],
)
def test_hardcoded_secret_fires(code: str) -> None:
    assert ids(code).count("hardcoded-secret") == 1


@pytest.mark.parametrize(
    "code",
    [
        "val apiKey = BuildConfig.MAPS_API_KEY",
        'const val API_KEY_PARAM = "api_key"',
        'val password = ""',
        'const val TOKEN_PREFS = "token_prefs"',
        'val secretMessage = "You found the secret level"',
    ],
)
def test_hardcoded_secret_quiet_on_references_and_names(code: str) -> None:
    assert "hardcoded-secret" not in ids(code)
