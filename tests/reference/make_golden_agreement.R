# Golden values for the reader-agreement statistics (mibgkit.stats.agreement), computed with R.
# Companion of make_golden.R; writes golden_agreement.json.
#
# Run from the repository root:
#     Rscript tests/reference/make_golden_agreement.R
# Needs R >= 4.2 with psych (ICC, cohen.kappa) and jsonlite (Debian: r-cran-psych r-cran-jsonlite).
#
# Data (none of it the synthetic cohort):
# - "shrout_fleiss": the 6 targets x 4 judges example of Shrout & Fleiss (1979), Table 2.
# - "normal20x3": 20 targets x 3 raters, continuous, seeded, with a rater offset (ICC2 < ICC3).
# - "likert40x5": 40 targets x 5 raters, integer scores 1..5 (many ties), seeded.
# - "tight60x3": 60 targets x 3 raters with small error: F is huge and p far below 1e-16.
# - "two9x2": 9 targets x 2 raters.
# ICC: psych::ICC(x, lmer = FALSE, alpha = 0.05) on the complete wide tables (all six rows).
#
# Kappa:
# - Cohen: psych::cohen.kappa(data.frame(a, b)) -> unweighted kappa, var.kappa (Fleiss, Cohen &
#   Everitt 1969), confid[1, ] (kappa -/+ z sqrt(var), clipped to [-1, 1]).
# - Fleiss: irr was not installed where these values were made, so kappam.fleiss(ratings) is
#   written out below from irr 0.84.1's formulas (kappa as Fleiss 1971; its SE under kappa = 0
#   as Fleiss, Nee & Landis 1979; z; p two-sided, here 2 pnorm(-|z|), which irr's
#   2 (1 - pnorm(|z|)) rounds to 0).
#   The Fleiss (1971) Table 1 data (30 patients, 6 raters, 5 diagnoses) is included: Fleiss reports
#   kappa = 0.430 and irr prints z = 17.7; the test also checks those printed values.
#
# Bland-Altman: differences d = a - b (or ln a - ln b), bias = mean(d), sd = sd(d), limits
# bias -/+ qnorm(0.975) sd, CIs with qt(0.975, n - 1) and SE sd/sqrt(n) (bias), sd sqrt(3/n)
# (limits); proportional bias: lm(d ~ (a + b)/2) slope and its two-sided t p.

suppressPackageStartupMessages({
  library(psych)
  library(jsonlite)
})

here <- "tests/reference"

# --------------------------------------------------------------------------- ICC data
sf <- matrix(c(9, 2, 5, 8,
               6, 1, 3, 2,
               8, 4, 6, 8,
               7, 1, 2, 6,
               10, 5, 6, 9,
               6, 2, 4, 7), ncol = 4, byrow = TRUE)

set.seed(20250114)
truth <- rnorm(20, 50, 10)
normal20x3 <- cbind(truth + rnorm(20, 0, 4), truth + 3 + rnorm(20, 0, 4), truth - 2 + rnorm(20, 0, 4))
normal20x3 <- round(normal20x3, 3)

set.seed(7)
latent <- rnorm(40)
likert40x5 <- sapply(c(0, 0.3, -0.2, 0.1, 0.5), function(off)
  pmin(5, pmax(1, round(3 + 1.1 * latent + off + rnorm(40, 0, 0.7)))))

set.seed(99)
base <- runif(60, 10, 200)
tight60x3 <- round(cbind(base * exp(rnorm(60, 0, 0.01)), base * exp(rnorm(60, 0.005, 0.01)),
                         base * exp(rnorm(60, 0, 0.01))), 4)

two9x2 <- cbind(c(3.1, 4.5, 2.2, 6.8, 5.0, 4.1, 3.3, 7.2, 5.9),
                c(3.4, 4.1, 2.9, 6.1, 5.5, 4.4, 2.8, 7.9, 6.0))

icc_sets <- list(shrout_fleiss = sf, normal20x3 = normal20x3, likert40x5 = likert40x5,
                 tight60x3 = tight60x3, two9x2 = two9x2)

icc_case <- function(nm) {
  x <- icc_sets[[nm]]
  r <- psych::ICC(x, lmer = FALSE, alpha = 0.05)$results
  rows <- lapply(seq_len(nrow(r)), function(i)
    list(type = r$type[i], icc = r$ICC[i], ci_lower = r[["lower bound"]][i],
         ci_upper = r[["upper bound"]][i], F = r$F[i], df1 = r$df1[i], df2 = r$df2[i], p = r$p[i]))
  list(dataset = nm, ratings = unname(x), results = rows)
}

# --------------------------------------------------------------------------- Cohen's kappa
set.seed(31)
cats <- c("absent", "equivocal", "present")
a3 <- sample(cats, 60, replace = TRUE, prob = c(0.5, 0.2, 0.3))
b3 <- ifelse(runif(60) < 0.7, a3, sample(cats, 60, replace = TRUE))
set.seed(32)
a2 <- sample(c("neg", "pos"), 25, replace = TRUE)
b2 <- ifelse(runif(25) < 0.8, a2, ifelse(a2 == "neg", "pos", "neg"))
# rater b uses a category ("4") that rater a never uses
a4 <- c("1", "2", "3", "1", "2", "3", "3", "2", "1", "1", "2", "3", "2", "2")
b4 <- c("1", "2", "3", "2", "2", "4", "3", "2", "1", "1", "3", "3", "2", "4")
# near-perfect agreement in a small sample: psych clips the upper bound at 1
a5 <- c(rep("x", 6), rep("y", 5))
b5 <- c(rep("x", 6), rep("y", 4), "x")

kappa_sets <- list(three60 = list(a3, b3), two25 = list(a2, b2), unused14 = list(a4, b4),
                   clipped11 = list(a5, b5))

cohen_case <- function(nm) {
  ab <- kappa_sets[[nm]]
  ck <- suppressWarnings(psych::cohen.kappa(data.frame(ab[[1]], ab[[2]], stringsAsFactors = FALSE)))
  list(dataset = nm, a = ab[[1]], b = ab[[2]], kappa = ck$kappa, var_kappa = ck$var.kappa,
       ci_lower = unname(ck$confid[1, "lower"]), ci_upper = unname(ck$confid[1, "upper"]),
       n = ck$n.obs)
}

# --------------------------------------------------------------------------- Fleiss' kappa
# irr 0.84.1 kappam.fleiss(ratings) (exact = FALSE), written out: ratings is subjects x raters.
kappam_fleiss <- function(ratings) {
  ns <- nrow(ratings); nr <- ncol(ratings)
  lev <- levels(as.factor(ratings))
  counts <- t(apply(ratings, 1, function(row) as.numeric(table(factor(row, levels = lev)))))
  agree <- sum((rowSums(counts^2) - nr) / (nr * (nr - 1)) / ns)
  pj <- colSums(counts) / (ns * nr)
  chance <- sum(pj^2)
  value <- (agree - chance) / (1 - chance)
  qj <- 1 - pj
  # standard error under kappa = 0 (Fleiss, Nee & Landis 1979), as irr 0.84.1
  var0 <- 2 / (sum(pj * qj)^2 * (ns * nr * (nr - 1))) * (sum(pj * qj)^2 - sum(pj * qj * (qj - pj)))
  z <- value / sqrt(var0)
  list(kappa = value, se0 = sqrt(var0), z = z, p = 2 * pnorm(-abs(z)), subjects = ns, raters = nr)
}

fleiss_counts <- matrix(c(
  0, 0, 0, 6, 0,   0, 3, 0, 0, 3,   0, 1, 4, 0, 1,   0, 0, 0, 0, 6,   0, 3, 0, 3, 0,
  2, 0, 4, 0, 0,   0, 0, 4, 0, 2,   2, 0, 3, 1, 0,   2, 0, 0, 4, 0,   0, 0, 0, 0, 6,
  1, 0, 0, 5, 0,   1, 1, 0, 4, 0,   0, 3, 3, 0, 0,   1, 0, 0, 5, 0,   0, 2, 0, 3, 1,
  0, 0, 5, 0, 1,   3, 0, 0, 1, 2,   5, 1, 0, 0, 0,   0, 2, 0, 4, 0,   1, 0, 2, 0, 3,
  0, 0, 0, 0, 6,   0, 1, 0, 5, 0,   0, 2, 0, 1, 3,   2, 0, 0, 4, 0,   1, 0, 0, 4, 1,
  0, 5, 0, 1, 0,   4, 0, 0, 0, 2,   0, 2, 0, 4, 0,   1, 0, 5, 0, 0,   0, 0, 0, 0, 6),
  ncol = 5, byrow = TRUE)
# one row per patient: the six diagnoses (1..5) in category order (Fleiss's raters are not the
# same six people for every patient, so the column order carries no meaning)
fleiss1971 <- t(apply(fleiss_counts, 1, function(cnt) rep(1:5, cnt)))

set.seed(41)
truth25 <- sample(c("A", "B", "C"), 25, replace = TRUE)
fleiss25x4 <- sapply(1:4, function(j)
  ifelse(runif(25) < 0.65, truth25, sample(c("A", "B", "C"), 25, TRUE)))

fleiss_sets <- list(fleiss1971 = fleiss1971, random25x4 = fleiss25x4)
fleiss_case <- function(nm) {
  x <- fleiss_sets[[nm]]
  c(list(dataset = nm, ratings = unname(x)), kappam_fleiss(x))
}

# --------------------------------------------------------------------------- Bland-Altman
set.seed(53)
vol <- exp(rnorm(30, log(40), 0.8))
va <- round(vol * exp(rnorm(30, 0.05, 0.12)), 3)
vb <- round(vol * exp(rnorm(30, 0, 0.12)), 3)
ba_case <- function(a, b, log) {
  d <- if (log) log(a) - log(b) else a - b
  m <- if (log) (log(a) + log(b)) / 2 else (a + b) / 2
  n <- length(d)
  bias <- mean(d); s <- sd(d); z <- qnorm(0.975); tq <- qt(0.975, n - 1)
  se_b <- s / sqrt(n); se_l <- s * sqrt(3 / n)
  lo <- bias - z * s; hi <- bias + z * s
  out <- c(bias = bias, sd = s, loa_lower = lo, loa_upper = hi,
           bias_ci_lower = bias - tq * se_b, bias_ci_upper = bias + tq * se_b,
           loa_lower_ci_lower = lo - tq * se_l, loa_lower_ci_upper = lo + tq * se_l,
           loa_upper_ci_lower = hi - tq * se_l, loa_upper_ci_upper = hi + tq * se_l)
  if (log) out[names(out) != "sd"] <- exp(out[names(out) != "sd"])
  co <- summary(lm(d ~ m))$coefficients
  c(as.list(out), list(slope = co["m", "Estimate"], slope_se = co["m", "Std. Error"],
                       slope_p = co["m", "Pr(>|t|)"], n = n, log = log))
}

golden <- list(
  r_version = R.version.string,
  psych_version = as.character(packageVersion("psych")),
  irr = "not installed: kappam.fleiss written out from irr 0.84.1",
  icc = lapply(names(icc_sets), icc_case),
  cohen_kappa = lapply(names(kappa_sets), cohen_case),
  fleiss_kappa = lapply(names(fleiss_sets), fleiss_case),
  bland_altman = list(a = va, b = vb,
                      linear = ba_case(va, vb, FALSE), log = ba_case(va, vb, TRUE))
)

writeLines(toJSON(golden, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE),
           file.path(here, "golden_agreement.json"))
cat("wrote", file.path(here, "golden_agreement.json"), "\n")
