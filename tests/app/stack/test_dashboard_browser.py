"""A real headless browser (Debian's chromium, driven by Selenium through the system
chromedriver) signs in to the dashboard of the head `feedray up` starts, through Ray's token
prompt, and finds the feedray application and its deployments on the Serve page.

The application is serve_config.yaml deployed with `feedray serve` onto that head, every
deployment scaled to zero replicas: the Serve controller builds feedray's real bind graph
(deployments.app:app_builder) and lists its deployments without a replica having to load
models from MLflow or reach Redis and Kafka, which this test does not start."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from app.stack.manager import Stack
from app.stack.process import free_port
from deployments.deploy import APP_NAME, load_config
from tests.app.stack.test_ray_jobs import VENV_BIN, bare_env, run
from tests.conftest import scratch_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DEPLOYMENTS = ("Ingress", "Retrieval", "Ranking", "CanaryRetrieval", "CanaryRanking")
WAIT_S = 120.0

PROMPT = "[role=dialog][aria-labelledby=token-auth-dialog-title]"
TOKEN_INPUT = f"{PROMPT} input[placeholder='Enter your authentication token']"
SUBMIT = "//*[@role='dialog']//button[normalize-space()='Submit']"
SERVE_TAB = "//a[@href='#/serve' and normalize-space()='Serve']"
SERVE_API = "api/serve/applications/"
WRONG_TOKEN = "not-the-token"
# The page's own data request, made from the page (with whatever cookie it holds).
FETCH_STATUS = """
const done = arguments[arguments.length - 1];
fetch(arguments[0], {credentials: "same-origin"}).then(r => done(r.status), e => done(String(e)));
"""


def zero_replica_config(port: int) -> dict:
    """serve_config.yaml with its HTTP ingress on ``port`` and every deployment at 0 replicas."""
    config = load_config()
    config["http_options"] = {**config["http_options"], "host": "127.0.0.1", "port": port}
    (application,) = config["applications"]
    for entry in application["deployments"]:
        entry.pop("num_replicas", None)
        entry["autoscaling_config"] = {
            **entry.get("autoscaling_config", {}),
            "min_replicas": 0,
            "initial_replicas": 0,
            "max_replicas": 1,
        }
    return config


@pytest.fixture(scope="module")
def served_head(tmp_path_factory: pytest.TempPathFactory):
    """`feedray up --only ray` from a bare shell in a scratch folder, then `feedray serve` of the
    zero-replica config onto it; yields the dashboard URL and the token `feedray status` names.

    The scratch folder is pytest's (a long path: HAProxy's sockets must not live under it,
    ``app.stack.ray_env.haproxy_folder``)."""
    where = tmp_path_factory.mktemp("dashboard")
    settings = scratch_settings(where / "s")
    env = bare_env(settings, "s")
    config_path = where / "serve_config.yaml"
    config_path.write_text(yaml.safe_dump(zero_replica_config(free_port())))
    try:
        up = run([str(VENV_BIN / "feedray"), "up", "--only", "ray"], env, where)
        assert up.returncode == 0, up.stdout + up.stderr
        served = run(
            [str(VENV_BIN / "feedray"), "serve", "--config", str(config_path),
             "--no-refresh-models", "--wait-s", "300"],
            env, where, timeout_s=420,
        )  # fmt: skip
        assert served.returncode == 0, served.stdout + served.stderr
        status = run([str(VENV_BIN / "feedray"), "status", "--only", "ray"], env, where)
        (line,) = [ln for ln in status.stdout.splitlines() if ln.startswith("ray dashboard")]
        token_command = line.split("print it with: ", 1)[1].rstrip(")")
        token = run(shlex.split(token_command), env, where).stdout.strip()
        assert token
        yield settings.ray.dashboard_url, token
    finally:
        Stack(settings, only=["ray"]).down(purge=True)


@pytest.fixture
def browser(tmp_path: Path):
    """Headless chromium through the system chromedriver (no driver download); the driver's log
    and a screenshot of the last page are left in ``tmp_path`` to look at after a failure."""
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.fail("chromium and chromium-driver are missing: run scripts/install.sh")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.add_argument("--window-size=1600,1200")
    driver = webdriver.Chrome(
        options=options,
        service=Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "driver.log")),
    )
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        try:
            driver.save_screenshot(str(tmp_path / "last_page.png"))
        except WebDriverException:
            pass
        driver.quit()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_the_token_prompt_leads_to_the_serve_page_listing_the_feedray_deployments(
    served_head, browser
):
    """Without the token the dashboard's API refuses the page and the prompt stays up (a wrong
    token is refused in it too); with the token from `feedray status` the page signs in, and
    the Serve tab lists the feedray application with each of its deployments."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, token = served_head
    wait = WebDriverWait(browser, WAIT_S)
    visible = ec.visibility_of_element_located
    browser.get(url)
    prompt = wait.until(visible((By.CSS_SELECTOR, PROMPT)))
    assert "Authentication Token Required" in prompt.text
    assert browser.execute_async_script(FETCH_STATUS, SERVE_API) in (401, 403)

    field = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, TOKEN_INPUT)))
    field.send_keys(WRONG_TOKEN)
    browser.find_element(By.XPATH, SUBMIT).click()
    refused = wait.until(visible((By.CSS_SELECTOR, f"{PROMPT} .MuiAlert-message")))
    assert "Invalid authentication token" in refused.text
    assert browser.execute_async_script(FETCH_STATUS, SERVE_API) in (401, 403)

    field.send_keys(Keys.BACKSPACE * len(WRONG_TOKEN), token)
    browser.execute_script("window.beforeSignIn = true;")
    browser.find_element(By.XPATH, SUBMIT).click()
    # Signed in, the dashboard reloads itself: a fresh document has no mark. Mid-reload,
    # chromedriver may answer with an inspector error instead of "stale element reference".
    WebDriverWait(browser, WAIT_S, ignored_exceptions=(WebDriverException,)).until(
        lambda driver: driver.execute_script(
            "return window.beforeSignIn === undefined && document.readyState === 'complete';"
        )
    )
    wait.until(ec.element_to_be_clickable((By.XPATH, SERVE_TAB))).click()
    links = {name: f"a[href='#/serve/applications/{APP_NAME}/{name}']" for name in DEPLOYMENTS}
    for selector in links.values():
        wait.until(visible((By.CSS_SELECTOR, selector)))

    assert urlsplit(browser.current_url).fragment.partition("?")[0] == "/serve"
    assert browser.execute_async_script(FETCH_STATUS, SERVE_API) == 200
    assert not browser.find_elements(By.CSS_SELECTOR, PROMPT)
    application = browser.find_element(
        By.CSS_SELECTOR, f"a[href='#/serve/applications/{APP_NAME}']"
    )
    assert application.text == APP_NAME
    assert "RUNNING" in application.find_element(By.XPATH, "./ancestor::tr").text
    listed = {name: browser.find_element(By.CSS_SELECTOR, sel).text for name, sel in links.items()}
    assert listed == {name: name for name in DEPLOYMENTS}
