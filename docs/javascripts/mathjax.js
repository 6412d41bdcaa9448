// MathJax's configuration for the site (mkdocs.yml): pymdown-extensions' arithmatex wraps each $...$ in
// a span of class "arithmatex" as \(...\) and each $$...$$ as \[...\]; MathJax typesets those spans and
// nothing else (so a dollar sign in code or prose is left alone).
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
    packages: {"[-]": ["noundefined"]},  // an undefined macro is an error (an merror node), not red text
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
};
