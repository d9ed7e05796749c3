"""Walking the tour (tests/support/tour.py) in a browser, shared by the screenshot script and
the accessibility check: each page visited once, signed in as whom it is for, once the parts
it loads after itself have arrived; console errors and pages wider than the window are
problems."""

from tests.support import tour

# Run in the browser: None when the page fits the window's width, else how wide it is and the
# first elements past the window's right edge (ignoring those inside a scrolling container).
OVERFLOW_JS = """() => {
  const width = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth <= width) return null;
  const culprits = [];
  for (const el of document.querySelectorAll('body *')) {
    const box = el.getBoundingClientRect();
    if (box.right <= width + 1 || box.width === 0) continue;
    let clipped = false;
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const box = p.getBoundingClientRect();
      if (getComputedStyle(p).overflowX !== 'visible' && box.right <= width + 1) {
        clipped = true; break;
      }
    }
    if (!clipped) culprits.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
      + (typeof el.className === 'string' && el.className.trim()
         ? '.' + el.className.trim().split(/\\s+/).join('.') : '')
      + ' ' + Math.round(box.right) + 'px');
  }
  return {scrollWidth: document.documentElement.scrollWidth, culprits: culprits.slice(0, 5)};
}"""


def sign_in(page, base: str, email: str) -> None:
    """Sign in through the login form (the tour's password)."""
    page.context.clear_cookies()
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(tour.PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login" not in url)


def too_wide(page) -> list[str]:
    """What sticks out past the window's right edge ([] when the page fits its width)."""
    wide = page.evaluate(OVERFLOW_JS)
    return [f"{wide['scrollWidth']} px wide: {', '.join(wide['culprits'])}"] if wide else []


def walk(context, base: str, pages: list[tour.Page], visit) -> list[str]:
    """Visit each page in a new tab of `context` (a Playwright browser context), signed in as
    whom it is for; `visit(page, item)` returns what is wrong there. Console errors are
    problems too, but for the 403 a refusal page reports of itself."""
    page = context.new_page()
    width = page.viewport_size["width"] if page.viewport_size else 0
    problems: list[str] = []
    current = {"item": pages[0]}

    def _console(message) -> None:
        if message.type != "error":
            return
        if current["item"].name.endswith("-refused") and "status of 403" in message.text:
            return  # the refusal page reports its own status
        problems.append(f"{width} px {current['item'].name}: console error: {message.text}")

    page.on("console", _console)
    signed_in_as = None
    for item in pages:
        current["item"] = item
        email = tour.VIEWER_EMAIL if item.viewer else tour.ADMIN_EMAIL
        if item.name == "login":
            context.clear_cookies()
            signed_in_as = None
        elif signed_in_as != email:
            sign_in(page, base, email)
            signed_in_as = email
        page.goto(base + item.path)
        # Parts a page loads after itself (hx-trigger="load") replace their placeholder.
        page.wait_for_function(
            """() => !document.querySelector('[hx-trigger="load"], .htmx-request')""")
        problems.extend(f"{width} px {item.name}: {problem}" for problem in visit(page, item))
    page.close()
    return problems
