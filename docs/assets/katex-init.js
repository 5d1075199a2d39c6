// Render the math that pymdownx.arithmatex wraps in <span|div class="arithmatex">,
// on every page load (Material's document$ also fires on instant navigation).
document$.subscribe(({ body }) => {
  renderMathInElement(body, {
    delimiters: [
      { left: "\\(", right: "\\)", display: false },
      { left: "\\[", right: "\\]", display: true },
    ],
    throwOnError: false,
  });
});
