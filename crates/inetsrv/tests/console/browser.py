"""The management console in a real headless browser: Debian's chromium,
driven through its chromedriver by Selenium (the test command installs
them). Arguments: CONSOLE_URL USER PASSWORD SITE_URL SCREENSHOT_DIR
NEW_PORT NEW_SITE_DIR VDIR_DIR; prints one JSON object with what each step
saw. Screenshots are kept in SCREENSHOT_DIR as test artifacts."""
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

console, user, password, site, shots, new_port, new_dir, vdir_dir = sys.argv[1:9]
os.makedirs(shots, exist_ok=True)
out = {}

options = webdriver.ChromeOptions()
for arg in ["--headless=new", "--window-size=1280,900", "--ignore-certificate-errors",
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]:
    options.add_argument(arg)
options.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
# A page being replaced leaves stale elements behind: looked up again.
wait = WebDriverWait(driver, 20, ignored_exceptions=[StaleElementReferenceException])
errors = []


def shot(name):
    driver.save_screenshot(os.path.join(shots, name + ".png"))


def status_of(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError as e:
        return "no answer: %s" % e.__class__.__name__


def message():
    element = wait.until(lambda d: d.find_element(By.ID, "message").text and d.find_element(By.ID, "message"))
    return {"text": element.text, "refused": "refused" in (element.get_attribute("class") or "")}


def select(label):
    button = wait.until(ready.element_to_be_clickable(
        (By.XPATH, "//nav//button[normalize-space(.)='%s']" % label)))
    button.click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#details h2").text.startswith(label)
               and d.find_element(By.ID, "properties"))


def save(name, value):
    driver.execute_script("document.getElementById('message').textContent = ''")
    row = driver.find_element(By.CSS_SELECTOR, 'tr[data-name="%s"]' % name)
    field = row.find_element(By.CSS_SELECTOR, "input, textarea")
    field.clear()
    field.send_keys(value)
    row.find_element(By.XPATH, ".//button[.='Save']").click()
    return message()


def tab(title):
    driver.find_element(By.CSS_SELECTOR, '[role=tab][data-tab="%s"]' % title).click()
    wait.until(lambda d: d.find_element(By.ID, "sheet").get_attribute("aria-label") == title
               and d.find_elements(By.CSS_SELECTOR, "#sheet tbody tr"))


def toggle(name):
    driver.execute_script("document.getElementById('message').textContent = ''")
    row = driver.find_element(By.CSS_SELECTOR, '#sheet tr[data-name="%s"]' % name)
    row.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
    row.find_element(By.XPATH, ".//button[.='Save']").click()
    return message()


def command(verb):
    driver.execute_script("document.getElementById('message').textContent = ''")
    driver.find_element(By.CSS_SELECTOR, 'button[data-command="%s"]' % verb).click()
    return message()


def body_of(url, tries=40):
    """The body of a page, once it answers 200 (a new site starts)."""
    for _ in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()
        except (urllib.error.HTTPError, OSError):
            time.sleep(0.25)
    return None


def submit(form_id, values):
    form = wait.until(ready.presence_of_element_located((By.ID, form_id)))
    # The form's last answer goes first, so that the wait below reads the
    # answer to this submission and not the one before it.
    driver.execute_script(
        "var m = document.querySelector('#%s .form-message'); if (m) m.textContent = '';" % form_id)
    for name, value in values.items():
        field = form.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    element = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#%s .form-message" % form_id)
                         if d.find_element(By.CSS_SELECTOR, "#%s .form-message" % form_id).text else None)
    return {"text": element.text, "refused": "refused" in (element.get_attribute("class") or "")}


def worker_pids():
    return sorted(r.get_attribute("data-pid")
                  for r in driver.find_elements(By.CSS_SELECTOR, "#workers tbody tr"))


def replaced(element):
    """Waits for a page to replace `element`: gone as Selenium says it
    (stale), or as Chromium sometimes says it first (its node left the
    document)."""

    def check(_driver):
        try:
            element.is_enabled()
            return False
        except StaleElementReferenceException:
            return True
        except WebDriverException as e:
            if "does not belong to the document" in str(e):
                return True
            raise

    return check


try:
    # Not logged on: the logon form, whatever page was asked for.
    driver.get(console)
    wait.until(ready.presence_of_element_located((By.ID, "password")))
    out["logon_form"] = driver.current_url.endswith("/login")
    shot("01-logon")
    driver.find_element(By.ID, "user").send_keys(user)
    driver.find_element(By.ID, "password").send_keys("wrong")
    form = driver.find_element(By.TAG_NAME, "form")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(replaced(form))
    out["wrong_password"] = wait.until(
        lambda d: d.find_element(By.CSS_SELECTOR, ".error").text)
    driver.find_element(By.ID, "user").clear()
    driver.find_element(By.ID, "user").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "nav li[data-site] button")))
    out["sites"] = [b.text for b in driver.find_elements(By.CSS_SELECTOR, "nav li[data-site] > button")]
    out["pools"] = [b.text for b in driver.find_elements(By.CSS_SELECTOR, "nav li[data-pool] > button")]
    shot("02-console")

    # The site's property sheet: a refused value shows the metabase's
    # error; an accepted one is written.
    select(out["sites"][0])
    out["tabs"] = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "[role=tab]")]
    # The keyboard: the arrow key moves to the next tab and shows it.
    driver.find_element(By.CSS_SELECTOR, '[role=tab][data-tab="Web Site"]').send_keys(Keys.ARROW_RIGHT)
    wait.until(lambda d: d.find_element(By.ID, "sheet").get_attribute("aria-label") == "Performance")
    out["arrow_key_tab"] = driver.switch_to.active_element.get_attribute("data-tab")
    tab("Performance")
    out["refused"] = save("MaxConnections", "many")
    tab("Web Site")
    out["saved"] = save("ServerComment", "Managed in a browser")
    shot("03-property-sheet")
    # A flag of the home directory, on its tab (a key below the site's).
    tab("Home Directory")
    out["browsing"] = toggle("EnableDirBrowsing")
    out["browsing_checked"] = driver.find_element(
        By.CSS_SELECTOR, '#sheet tr[data-name="EnableDirBrowsing"] input').is_selected()

    # A new site, then a virtual directory in it: both served at once.
    driver.find_element(By.ID, "new-site").click()
    out["site_taken"] = submit("site-form", {"name": "Browser Site", "port": site.rsplit(":", 1)[1].strip("/"),
                                             "path": new_dir})
    out["site_created"] = submit("site-form", {"port": new_port})
    out["new_site_page"] = body_of("http://127.0.0.1:%s/index.html" % new_port)
    select("Browser Site")
    out["vdir_created"] = submit("vdir-form", {"alias": "docs", "path": vdir_dir})
    out["vdir_page"] = body_of("http://127.0.0.1:%s/docs/page.html" % new_port)
    # The site's request log, tailed: the page just fetched is in it.
    for _ in range(40):
        driver.find_element(By.XPATH, "//button[.='Refresh logs']").click()
        time.sleep(0.25)
        log = driver.find_element(By.ID, "request-log").text
        if "/docs/page.html" in log:
            break
    out["request_log"] = driver.find_element(By.ID, "request-log").text
    shot("04-new-site")

    # Back up, delete the new site (it stops answering), restore: it is
    # back and serves again. A new pool shows in the tree.
    driver.find_element(By.ID, "backups").click()
    out["backup"] = submit("backup-form", {"name": "console"})
    out["backup_listed"] = bool(wait.until(
        lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-backup="console.0"]')))
    select("Browser Site")
    driver.find_element(By.CSS_SELECTOR, 'button[data-command="delete"]').click()
    driver.switch_to.alert.accept()
    wait.until(lambda d: not d.find_elements(By.XPATH, "//nav//button[.='Browser Site']"))
    out["deleted_site_answers"] = status_of("http://127.0.0.1:%s/index.html" % new_port)
    driver.find_element(By.ID, "backups").click()
    restore = wait.until(ready.element_to_be_clickable(
        (By.CSS_SELECTOR, 'tr[data-backup="console.0"] button')))
    restore.click()
    driver.switch_to.alert.accept()
    out["restored"] = wait.until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#backup-form .form-message").text)
    wait.until(lambda d: d.find_elements(By.XPATH, "//nav//button[.='Browser Site']"))
    out["restored_page"] = body_of("http://127.0.0.1:%s/docs/page.html" % new_port)
    # Web Service Extensions: allow unknown CGI programs, as `inetsrv
    # webext enable unknown-cgi` would.
    driver.find_element(By.ID, "webext").click()
    row = wait.until(ready.presence_of_element_located(
        (By.CSS_SELECTOR, 'tr[data-extension="unknown-cgi"]')))
    out["webext_before"] = row.find_elements(By.TAG_NAME, "td")[1].text
    row.find_element(By.TAG_NAME, "button").click()
    out["webext_done"] = wait.until(lambda d: d.find_element(By.ID, "message").text)
    out["webext_after"] = driver.find_element(
        By.CSS_SELECTOR, 'tr[data-extension="unknown-cgi"] td:nth-child(2)').text
    driver.find_element(By.ID, "new-pool").click()
    out["pool_created"] = submit("pool-form", {"name": "BrowserPool"})
    wait.until(lambda d: d.find_elements(By.XPATH, "//nav//button[.='BrowserPool']"))
    # A pool in use cannot go; an unused one can.
    select("DefaultAppPool")
    driver.find_element(By.CSS_SELECTOR, 'button[data-command="delete"]').click()
    driver.switch_to.alert.accept()
    out["pool_in_use"] = message()
    select("BrowserPool")
    driver.find_element(By.CSS_SELECTOR, 'button[data-command="delete"]').click()
    driver.switch_to.alert.accept()
    wait.until(lambda d: not d.find_elements(By.XPATH, "//nav//button[.='BrowserPool']"))
    # The live table of pools follows at its next refresh.
    wait.until(lambda d: [r.get_attribute("data-pool")
                          for r in d.find_elements(By.CSS_SELECTOR, "#queues tbody tr")] == ["DefaultAppPool"])
    out["queues"] = [r.get_attribute("data-pool") for r in driver.find_elements(By.CSS_SELECTOR, "#queues tbody tr")]
    # The first site, by the name it was given above.
    select("Managed in a browser")

    # Stop the site: its binding goes; start it: it answers again.
    out["before_stop"] = status_of(site)
    out["stop"] = command("stop")
    time.sleep(0.5)
    out["while_stopped"] = status_of(site)
    shot("04-stopped-site")
    out["start"] = command("start")
    time.sleep(0.5)
    out["after_start"] = status_of(site)

    # Stop the site's pool: its requests get 503, as IIS answers; start it.
    select(out["pools"][0])
    out["pool_stop"] = command("stop")
    out["pool_stopped"] = status_of(site + "?pool-stopped")
    out["pool_start"] = command("start")
    out["pool_started"] = status_of(site + "?pool-started")
    select("Managed in a browser")

    # Load: the requests graph moves.
    def load():
        end = time.time() + 12
        while time.time() < end:
            status_of(site + "load.html")
    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    latest = "0"
    for _ in range(60):
        latest = driver.find_element(By.ID, "graph").get_attribute("data-latest") or "0"
        if float(latest) > 0:
            break
        time.sleep(0.5)
    out["graph_latest"] = float(latest)
    # The selected site's own graph moves too.
    site_latest = "0"
    for _ in range(40):
        site_latest = driver.find_element(By.ID, "node-graph").get_attribute("data-latest") or "0"
        if float(site_latest) > 0:
            break
        time.sleep(0.5)
    out["site_graph_latest"] = float(site_latest)
    out["rates"] = driver.find_element(By.ID, "rates").text
    driver.execute_script("window.scrollTo(0, 0)")
    shot("05-under-load")
    worker.join()

    # Recycle the pool: a new worker process takes over.
    for _ in range(40):
        if worker_pids():
            break
        time.sleep(0.5)
    out["pids_before"] = worker_pids()
    select(out["pools"][0])
    out["recycle"] = command("recycle")
    for _ in range(60):
        now = worker_pids()
        if now and not set(now) & set(out["pids_before"]):
            break
        time.sleep(0.5)
    out["pids_after"] = worker_pids()
    time.sleep(2.5)
    out["worker_row"] = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#workers tbody tr:first-child td")]
    shot("06-recycled")

    # A phone's width: one column, nothing wider than the screen.
    driver.set_window_size(390, 844)
    driver.get(console)
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "nav li[data-site] button")))
    select("Managed in a browser")
    out["phone_overflow"] = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    shot("07-phone")
    driver.set_window_size(1280, 900)

    driver.find_element(By.ID, "logout").click()
    wait.until(ready.presence_of_element_located((By.ID, "password")))
    out["logged_out"] = driver.current_url.endswith("/login")
    driver.get(console)
    out["after_logout"] = driver.current_url.endswith("/login")
    # The page's console: nothing the CSP refused, no script errors.
    # (The answers the steps above asked for are logged as failed
    # loads: the wrong password's 401, the refused value's and the taken
    # binding's 400.)
    expected = ("/login - Failed to load resource: the server responded with a status of 401",
                "/api/set - Failed to load resource: the server responded with a status of 400",
                "/api/site - Failed to load resource: the server responded with a status of 400",
                "/api/pool/delete - Failed to load resource: the server responded with a status of 400")
    errors = [e["message"] for e in driver.get_log("browser")
              if e["level"] == "SEVERE" and not any(x in e["message"] for x in expected)]
    out["browser_errors"] = errors
finally:
    driver.quit()
print(json.dumps(out))
