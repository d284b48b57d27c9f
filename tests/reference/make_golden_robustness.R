# Golden values for the robustness statistics (mibgkit.stats.assumptions, splines, timeroc,
# validation), computed with R. Companion of make_golden.R; writes golden_robustness.json.
#
# Run from the repository root:
#     Rscript tests/reference/make_golden_robustness.R
# Needs R >= 4.2 with survival (>= 3: the score-test cox.zph), Hmisc, rms, riskRegression,
# coxphf and jsonlite. Debian: r-cran-survival r-cran-hmisc r-cran-rms r-cran-riskregression
# r-cran-jsonlite; coxphf is not packaged by Debian: install it from CRAN or its source
# (R CMD INSTALL coxphf) — it needs a Fortran compiler.
# Data: cohort60.csv and rossi.csv (see make_data.py) and breast.csv, the breast-cancer data
# of Heinze & Schemper (2001) with monotone likelihood in G, as shipped with coxphf.

suppressPackageStartupMessages({
  library(survival)
  library(Hmisc)
  library(rms)
  library(riskRegression)
  library(coxphf)
  library(jsonlite)
})

here <- "tests/reference"
rd <- function(name) read.csv(file.path(here, name), stringsAsFactors = FALSE)
rossi <- rd("rossi.csv")
cohort <- rd("cohort60.csv")
breast <- rd("breast.csv")
ctl <- coxph.control(eps = 1e-10, iter.max = 100)

# --------------------------------------------------------------------------- cox.zph
zph <- function(d, label, time, event, covs, ties, transform) {
  f <- coxph(as.formula(sprintf("Surv(%s, %s) ~ %s", time, event, paste(covs, collapse = " + "))),
             data = d, ties = ties, control = ctl)
  z <- cox.zph(f, transform = transform)
  list(dataset = label, covariates = covs, ties = ties, transform = transform,
       rows = rownames(z$table), chisq = unname(z$table[, "chisq"]), df = unname(z$table[, "df"]),
       p = unname(z$table[, "p"]), beta = unname(coef(f)),
       time = unname(z$time), g = unname(z$x), residuals = unname(z$y))
}
ph <- list(
  zph(cohort, "cohort60", "time", "event", c("bin", "x"), "efron", "km"),
  zph(cohort, "cohort60", "time", "event", c("bin", "x"), "breslow", "km"),
  zph(cohort, "cohort60", "time", "event", c("score"), "efron", "km"),
  zph(rossi, "rossi", "week", "arrest", c("fin", "age", "prio"), "efron", "km"),
  zph(rossi, "rossi", "week", "arrest", c("fin", "age", "prio"), "efron", "identity"),
  zph(rossi, "rossi", "week", "arrest", c("fin", "age", "prio"), "efron", "rank"),
  zph(rossi, "rossi", "week", "arrest", c("fin", "age", "prio"), "efron", "log")
)

# --------------------------------------------------------------------------- restricted cubic splines
knots_out <- list()
for (spec in list(list("cohort60", cohort, "x"), list("cohort60", cohort, "score"),
                  list("rossi", rossi, "age"), list("rossi", rossi, "prio"))) {
  for (nk in c(3, 4, 5)) {
    x <- spec[[2]][[spec[[3]]]]
    k <- rcspline.eval(x, nk = nk, knots.only = TRUE)
    b <- rcspline.eval(x, knots = k, inclx = TRUE)
    knots_out[[length(knots_out) + 1]] <- list(dataset = spec[[1]], covariate = spec[[3]], n_knots = nk,
                                               knots = unname(k), basis = unname(b))
  }
}
spline_fit <- function(d, label, time, event, cov, nk, ties) {
  dd <- datadist(d); options(datadist = dd)
  assign("dd", dd, envir = globalenv())
  fo <- as.formula(sprintf("Surv(%s, %s) ~ rcs(%s, %d)", time, event, cov, nk))
  f <- cph(fo, data = d, x = TRUE, y = TRUE, method = ties, eps = 1e-10, tol = 1e-11, iter.max = 100)
  a <- anova(f)
  grid <- seq(sort(d[[cov]])[5], sort(d[[cov]])[nrow(d) - 4], length.out = 11)
  args <- list(f, ref.zero = TRUE, conf.int = 0.95)
  args[[cov]] <- grid
  p <- do.call(Predict, args)
  list(dataset = label, covariate = cov, n_knots = nk, ties = ties,
       knots = unname(f$Design$parms[[cov]]), beta = unname(coef(f)), vcov = unname(vcov(f)),
       overall_chisq = unname(a[1, "Chi-Square"]), overall_df = unname(a[1, "d.f."]),
       nonlinear_chisq = unname(a[2, "Chi-Square"]), nonlinear_df = unname(a[2, "d.f."]),
       reference = unname(median(d[[cov]])),
       grid = grid, log_hr = unname(p$yhat), ci_lower = unname(p$lower), ci_upper = unname(p$upper))
}
splines <- list(
  spline_fit(cohort, "cohort60", "time", "event", "x", 3, "efron"),
  spline_fit(cohort, "cohort60", "time", "event", "x", 4, "efron"),
  spline_fit(cohort, "cohort60", "time", "event", "score", 4, "efron"),
  spline_fit(rossi, "rossi", "week", "arrest", "age", 4, "efron"),
  spline_fit(rossi, "rossi", "week", "arrest", "age", 3, "breslow")
)
iqr_effect <- function(d, label, time, event, cov) {
  dd <- datadist(d); options(datadist = dd)
  assign("dd", dd, envir = globalenv())
  f <- cph(as.formula(sprintf("Surv(%s, %s) ~ %s", time, event, cov)), data = d, x = TRUE, y = TRUE,
           eps = 1e-10, tol = 1e-11, iter.max = 100)
  s <- summary(f)
  hr <- s[2, ]
  list(dataset = label, covariate = cov, q1 = unname(s[1, "Low"]), q3 = unname(s[1, "High"]),
       hr = unname(hr["Effect"]), ci_lower = unname(hr["Lower 0.95"]), ci_upper = unname(hr["Upper 0.95"]))
}
iqr <- list(iqr_effect(cohort, "cohort60", "time", "event", "x"),
            iqr_effect(cohort, "cohort60", "time", "event", "score"),
            iqr_effect(rossi, "rossi", "week", "arrest", "age"),
            iqr_effect(rossi, "rossi", "week", "arrest", "prio"))

# --------------------------------------------------------------------------- Firth (coxphf)
firth <- function(d, label, time, event, covs, pl) {
  fo <- as.formula(sprintf("Surv(%s, %s) ~ %s", time, event, paste(covs, collapse = " + ")))
  f <- coxphf(fo, data = d, pl = pl, maxit = 200, epsilon = 1e-10, gconv = 1e-8)
  ord <- suppressWarnings(coxph(fo, data = d, ties = "breslow"))
  list(dataset = label, covariates = covs, pl = pl, beta = unname(coef(f)), se = unname(sqrt(diag(f$var))),
       ci_lower = unname(f$ci.lower), ci_upper = unname(f$ci.upper), p = unname(f$prob),
       loglik = unname(f$loglik), ordinary_beta = unname(coef(ord)))
}
firth_out <- list(
  firth(breast, "breast", "TIME", "CENS", c("T", "N", "G", "CD"), TRUE),
  firth(breast, "breast", "TIME", "CENS", c("T", "N", "G", "CD"), FALSE),
  firth(breast, "breast", "TIME", "CENS", c("G"), TRUE),
  firth(cohort, "cohort60", "time", "event", c("bin", "x"), TRUE)
)

# --------------------------------------------------------------------------- time-dependent AUC
tdauc <- function(d, label, time, event, marker, times) {
  d$status_ <- d[[event]]
  s <- Score(list(m = d[[marker]]), formula = as.formula(sprintf("Hist(%s, status_) ~ 1", time)), data = d,
             times = times, metrics = "auc", cens.model = "km", null.model = FALSE, conf.int = FALSE)
  list(dataset = label, marker = marker, times = times, auc = s$AUC$score$AUC)
}
auc_out <- list(
  tdauc(cohort, "cohort60", "time", "event", "score", c(12, 24, 36)),
  tdauc(cohort, "cohort60", "time", "event", "x", c(6, 12, 24, 48)),
  tdauc(rossi, "rossi", "week", "arrest", "prio", c(13, 26, 39)),
  tdauc(rossi, "rossi", "week", "arrest", "age", c(13, 26, 39))
)

# --------------------------------------------------------------------------- rms::validate (fixed model)
# validate() draws resample i as sample(n, replace = TRUE); drawing the same sequence after the
# same set.seed gives its indices, which the Python test replays.
val <- function(d, label, time, event, covs, B, seed) {
  dd <- datadist(d); options(datadist = dd)
  assign("dd", dd, envir = globalenv())
  f <- cph(as.formula(sprintf("Surv(%s, %s) ~ %s", time, event, paste(covs, collapse = " + "))),
           data = d, x = TRUE, y = TRUE)
  set.seed(seed); idx <- replicate(B, sample(nrow(d), replace = TRUE))
  set.seed(seed); v <- rms::validate(f, B = B)
  list(dataset = label, covariates = covs, B = B, indices = unname(t(idx) - 1L),
       rows = rownames(v), index_orig = unname(v[, "index.orig"]), training = unname(v[, "training"]),
       test = unname(v[, "test"]), optimism = unname(v[, "optimism"]),
       index_corrected = unname(v[, "index.corrected"]), n = unname(v[, "n"]))
}
validate_out <- list(
  val(cohort, "cohort60", "time", "event", c("bin", "x", "score"), 40, 11),
  val(rossi, "rossi", "week", "arrest", c("fin", "age", "prio"), 20, 7)
)

golden <- list(
  generated_with = list(R = R.version.string,
                        survival = as.character(packageVersion("survival")),
                        Hmisc = as.character(packageVersion("Hmisc")),
                        rms = as.character(packageVersion("rms")),
                        riskRegression = as.character(packageVersion("riskRegression")),
                        coxphf = as.character(packageVersion("coxphf"))),
  ph_test = ph, rcs_knots = knots_out, spline_fit = splines, hr_per_iqr = iqr,
  firth = firth_out, time_auc = auc_out, validate = validate_out
)
writeLines(toJSON(golden, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE,
                  matrix = "rowmajor"),
           file.path(here, "golden_robustness.json"))
cat("wrote", file.path(here, "golden_robustness.json"), "\n")
