"""The management console in Firefox (Debian's firefox-esr, headless),
driven over Marionette, Firefox's own remote protocol, by Mozilla's
marionette_driver (no geckodriver is packaged). Arguments: CONSOLE_URL
USER PASSWORD SCREENSHOT; prints one JSON object with what each step saw."""
import base64
import json
import os
import sys

from marionette_driver.by import By
from marionette_driver.errors import NoSuchElementException, StaleElementException
from marionette_driver.marionette import Marionette
from marionette_driver.wait import Wait

console, user, password, screenshot = sys.argv[1:5]
out = {}

# Firefox's own log goes beside the screenshot, not into the working
# directory.
gecko_log = os.path.join(os.path.dirname(screenshot), "gecko.log")
client = Marionette(bin="/usr/bin/firefox-esr", headless=True, startup_timeout=90, gecko_log=gecko_log)
client.start_session({"acceptInsecureCerts": True})
wait = Wait(client, timeout=20, ignored_exceptions=[NoSuchElementException, StaleElementException])


def message():
    return wait.until(lambda m: m.find_element(By.ID, "message").text or None)


try:
    client.set_window_rect(width=1280, height=900)
    client.navigate(console)
    out["logon_form"] = client.get_url().endswith("/login")
    client.find_element(By.ID, "user").send_keys(user)
    client.find_element(By.ID, "password").send_keys(password)
    client.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda m: m.find_element(By.CSS_SELECTOR, "nav li[data-site] button"))
    out["sites"] = [b.text for b in client.find_elements(By.CSS_SELECTOR, "nav li[data-site] > button")]
    client.find_element(By.CSS_SELECTOR, "nav li[data-site] > button").click()
    wait.until(lambda m: m.find_element(By.CSS_SELECTOR, '[role=tab][data-tab="Performance"]'))
    client.find_element(By.CSS_SELECTOR, '[role=tab][data-tab="Performance"]').click()
    row = wait.until(lambda m: m.find_element(By.CSS_SELECTOR, '#sheet tr[data-name="MaxConnections"]'))
    field = row.find_element(By.CSS_SELECTOR, "input")
    field.clear()
    field.send_keys("lots")
    row.find_element(By.CSS_SELECTOR, "td:last-child button").click()
    out["refused"] = message()
    client.execute_script("document.getElementById('message').textContent = ''")
    client.find_element(By.CSS_SELECTOR, '[role=tab][data-tab="Web Site"]').click()
    row = wait.until(lambda m: m.find_element(By.CSS_SELECTOR, '#sheet tr[data-name="ServerComment"]'))
    field = row.find_element(By.CSS_SELECTOR, "input")
    field.clear()
    field.send_keys("Managed in Firefox")
    row.find_element(By.CSS_SELECTOR, "td:last-child button").click()
    out["saved"] = message()
    # The live counters refresh without a reload (every 2 s).
    out["rates"] = wait.until(
        lambda m: (lambda t: t if t and "requests/s" in t else None)(m.find_element(By.ID, "rates").text))
    with open(screenshot, "wb") as f:
        f.write(base64.b64decode(client.screenshot()))
    client.find_element(By.ID, "logout").click()
    wait.until(lambda m: m.get_url().endswith("/login") or None)
    out["logged_out"] = True
finally:
    client.delete_session()
    client.cleanup()
print(json.dumps(out))
