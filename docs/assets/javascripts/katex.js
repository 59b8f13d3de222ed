// Render the math that pymdownx.arithmatex (generic mode) leaves as `\(...\)` / `\[...\]`
// inside `.arithmatex` elements, with the KaTeX bundled under assets/katex (no CDN).
// `document$` is Material's page observable: it also fires after instant-navigation loads.
document$.subscribe(({ body }) => {
  for (const element of body.querySelectorAll(".arithmatex")) {
    renderMathInElement(element, {
      delimiters: [
        { left: "\\(", right: "\\)", display: false },
        { left: "\\[", right: "\\]", display: true },
      ],
      throwOnError: false,
    });
  }
});
