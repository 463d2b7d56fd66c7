"""Templated outbound mail: find a template's files, render them safely, check them, and build PDFs.

A template NAME is a folder `<templates_dir>/NAME/` holding `subject.txt`, `body.txt`, an optional
`body.html`, and per-language variants such as `subject.de.txt`, `body.de.txt`, `body.de.html`.

- `loader.find()` picks the files for one language (requested, then the default language, then unsuffixed).
- `render.render()` renders them in a Jinja2 sandbox with StrictUndefined; HTML is autoescaped, text is not.
- `check.check_all()` renders every template and language with `sample.sample_context()`.
- `pdf.invoice_pdf()` / `pdf.dunning_pdf()` build one-page PDFs with fpdf2's core fonts.

See docs/templates.md.
"""
