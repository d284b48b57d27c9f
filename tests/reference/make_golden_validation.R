# Golden values for the external-validation statistics (mibgkit.stats.concordance, calibration,
# decision), computed with R. Companion of make_golden.R; writes golden_validation.json.
#
# Run from the repository root:
#     Rscript tests/reference/make_golden_validation.R
# Needs R >= 4.2 with survival (>= 3.0: concordance() with timewt and ymax) and jsonlite
# (Debian: r-cran-survival r-cran-jsonlite).
# Data: rossi.csv, cohort60.csv (see make_data.py; cohort60 has tied event times and events tied
# with censorings) and breast.csv (Heinze & Schemper 2001, binary covariates: tied scores).
#
# A "frozen" model is a linear predictor with FIXED coefficients written below (rounded, made-up
# published-looking values), never fitted on the data it is evaluated on. The coefficients are
# stored in the JSON so the Python tests rebuild the same lp.

suppressPackageStartupMessages({
  library(survival)
  library(jsonlite)
})

here <- "tests/reference"
rd <- function(name) read.csv(file.path(here, name), stringsAsFactors = FALSE)
z <- qnorm(0.975)
ctl <- coxph.control(eps = 1e-10, iter.max = 100)

frozen <- list(
  rossi = list(fin = -0.35, age = -0.06, prio = 0.09, race = 0.3, wexp = -0.15),
  cohort60 = list(x = 0.6, bin = 0.4, score = 0.3),
  breast = list(T = 0.8, N = 1.0, G = 1.2, CD = 0.7)
)
sets <- list(
  rossi = list(d = rd("rossi.csv"), time = "week", event = "arrest"),
  cohort60 = list(d = rd("cohort60.csv"), time = "time", event = "event"),
  breast = list(d = rd("breast.csv"), time = "TIME", event = "CENS")
)
for (nm in names(sets)) {
  cf <- frozen[[nm]]
  d <- sets[[nm]]$d
  d$lp <- Reduce(`+`, lapply(names(cf), function(v) cf[[v]] * d[[v]]))
  d$t <- d[[sets[[nm]]$time]]
  d$e <- d[[sets[[nm]]$event]]
  sets[[nm]]$d <- d
}
# tau for each data set: an event time inside the data, so that an event exactly at tau occurs
event_times <- function(d) sort(unique(d$t[d$e == 1]))
tau_of <- list(rossi = 20, cohort60 = 17, breast = event_times(sets$breast$d)[10])
for (nm in names(tau_of)) stopifnot(tau_of[[nm]] %in% event_times(sets[[nm]]$d))

# --------------------------------------------------------------------------- concordance
conc_case <- function(nm, score, method, tau) {
  d <- sets[[nm]]$d
  s <- d[[score]]
  args <- list(Surv(d$t, d$e) ~ s, reverse = TRUE, timewt = if (method == "uno") "n/G2" else "n")
  if (!is.null(tau)) args$ymax <- tau
  f <- do.call(concordance, args)
  cnt <- f$count
  list(dataset = nm, score = score, method = method, tau = tau,
       c = unname(f$concordance), se = sqrt(unname(f$var)),
       concordant = unname(cnt["concordant"]), discordant = unname(cnt["discordant"]),
       tied = unname(cnt["tied.x"]), tied_time = unname(cnt["tied.y"]),
       comparable = unname(cnt["concordant"] + cnt["discordant"] + cnt["tied.x"]))
}
scores <- list(rossi = c("lp", "prio", "fin"), cohort60 = c("lp", "score", "bin"), breast = c("lp", "N"))
conc <- list()
for (nm in names(scores)) for (sc in scores[[nm]]) for (m in c("harrell", "uno"))
  for (tau in list(NULL, tau_of[[nm]]))
    conc[[length(conc) + 1]] <- conc_case(nm, sc, m, tau)

# --------------------------------------------------------------------------- calibration slope
slope <- list()
for (nm in names(sets)) for (ties in c("efron", "breslow")) {
  d <- sets[[nm]]$d
  f <- coxph(Surv(t, e) ~ lp, data = d, ties = ties, control = ctl)
  b <- unname(coef(f)); se <- unname(sqrt(vcov(f)[1, 1]))
  slope[[length(slope) + 1]] <- list(dataset = nm, ties = ties, slope = b, se = se,
                                     ci_lower = b - z * se, ci_upper = b + z * se,
                                     p = 2 * pnorm(-abs((b - 1) / se)), p_zero = 2 * pnorm(-abs(b / se)),
                                     n = f$n, events = f$nevent)
}

# --------------------------------------------------------------------------- calibration at a horizon
risk_groups <- function(lp, g) {
  if (length(unique(lp)) <= g) return(match(lp, sort(unique(lp))))
  # inverse-ECDF (type 1) quantiles as edges, intervals closed on the right, groups renumbered
  br <- c(-Inf, unique(unname(quantile(lp, probs = (1:(g - 1)) / g, type = 1))), Inf)
  k <- cut(lp, br, labels = FALSE)
  match(k, sort(unique(k)))
}
km_at <- function(t, e, h) {
  s <- summary(survfit(Surv(t, e) ~ 1), times = h)
  c(observed = 1 - s$surv, lower = 1 - s$upper, upper = 1 - s$lower)
}
calib_case <- function(nm, h, g, ties) {
  d <- sets[[nm]]$d
  fit0 <- coxph(Surv(t, e) ~ offset(lp), data = d, ties = ties)
  s0 <- summary(survfit(fit0, newdata = data.frame(lp = 0)), times = h)$surv
  pred <- 1 - s0^exp(d$lp)
  grp <- risk_groups(d$lp, g)
  rows <- lapply(sort(unique(grp)), function(k) {
    m <- grp == k
    o <- km_at(d$t[m], d$e[m], h)
    list(group = k, n = sum(m), events = sum(d$e[m]), lp_mean = mean(d$lp[m]), predicted = mean(pred[m]),
         observed = unname(o["observed"]), observed_ci_lower = unname(o["lower"]),
         observed_ci_upper = unname(o["upper"]), n_at_risk = sum(d$t[m] >= h))
  })
  o <- km_at(d$t, d$e, h)
  list(dataset = nm, horizon = h, groups = g, ties = ties, baseline_survival = s0, rows = rows,
       overall = list(predicted = mean(pred), observed = unname(o["observed"]),
                      observed_ci_lower = unname(o["lower"]), observed_ci_upper = unname(o["upper"]),
                      oe_ratio = unname(o["observed"]) / mean(pred)))
}
calib <- list()
for (ties in c("efron", "breslow")) {
  calib[[length(calib) + 1]] <- calib_case("rossi", 26, 3, ties)
  calib[[length(calib) + 1]] <- calib_case("rossi", 52, 4, ties)
  calib[[length(calib) + 1]] <- calib_case("cohort60", 12, 3, ties)
  calib[[length(calib) + 1]] <- calib_case("cohort60", 30, 2, ties)
  calib[[length(calib) + 1]] <- calib_case("breast", 48, 3, ties)
}

# --------------------------------------------------------------------------- net benefit
positive_rule <- list(rossi = function(d) d$prio >= 3, cohort60 = function(d) d$bin == 1,
                      breast = function(d) d$N == 1)
positive_text <- list(rossi = "prio >= 3", cohort60 = "bin == 1", breast = "N == 1")
thresholds <- c(0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.8)
km_surv <- function(t, e, h) summary(survfit(Surv(t, e) ~ 1), times = h, extend = TRUE)$surv
nb_case <- function(nm, h) {
  d <- sets[[nm]]$d
  pos <- positive_rule[[nm]](d)
  p <- mean(pos)
  r_pos <- 1 - km_surv(d$t[pos], d$e[pos], h)
  r_all <- 1 - km_surv(d$t, d$e, h)
  odds <- thresholds / (1 - thresholds)
  list(dataset = nm, positive = positive_text[[nm]], horizon = h, thresholds = thresholds,
       last_followup_positive = max(d$t[pos]), last_followup_all = max(d$t),
       risk_positive = r_pos, risk_all = r_all, share_positive = p,
       net_benefit = r_pos * p - (1 - r_pos) * p * odds, treat_all = r_all - (1 - r_all) * odds)
}
nb <- list(nb_case("rossi", 26), nb_case("rossi", 60),          # 60: beyond everybody's follow-up
           nb_case("cohort60", 12), nb_case("cohort60", 45),    # 45: beyond the positives' (42)
           nb_case("breast", 24), nb_case("breast", 72))
stopifnot(nb[[4]]$last_followup_positive < 45, 45 < nb[[4]]$last_followup_all)

# --------------------------------------------------------------------------- LR test of nested models
# rossi_na: rossi with missing values at fixed rows (1-based), to check the complete-case rule
na_rows <- list(prio = c(3, 17, 40), race = c(5, 17, 101))
rossi_na <- sets$rossi$d
for (v in names(na_rows)) rossi_na[[v]][na_rows[[v]]] <- NA
lr_case <- function(label, d, base, added, ties) {
  cols <- c("t", "e", base, added)
  d <- na.omit(d[, cols])
  rhs <- function(v) if (length(v)) paste(v, collapse = " + ") else "1"
  f0 <- coxph(as.formula(paste("Surv(t, e) ~", rhs(base))), data = d, ties = ties, control = ctl)
  f1 <- coxph(as.formula(paste("Surv(t, e) ~", rhs(c(base, added)))), data = d, ties = ties, control = ctl)
  a <- anova(f0, f1)
  list(dataset = label, base = I(base), added = I(added), ties = ties,
       statistic = a$Chisq[2], df = a$Df[2], p = a[["Pr(>|Chi|)"]][2],
       loglik_base = a$loglik[1], loglik_full = a$loglik[2], n = nrow(d), events = sum(d$e))
}
lr <- list()
for (ties in c("efron", "breslow")) {
  lr[[length(lr) + 1]] <- lr_case("rossi", sets$rossi$d, c("age", "prio"), c("fin"), ties)
  lr[[length(lr) + 1]] <- lr_case("rossi", sets$rossi$d, c("age", "prio"), c("fin", "race", "wexp"), ties)
  lr[[length(lr) + 1]] <- lr_case("rossi", sets$rossi$d, character(0), c("fin", "age"), ties)
  lr[[length(lr) + 1]] <- lr_case("rossi_na", rossi_na, c("age", "prio"), c("fin", "race"), ties)
  lr[[length(lr) + 1]] <- lr_case("cohort60", sets$cohort60$d, c("x"), c("bin", "score"), ties)
}

golden <- list(
  r_version = R.version.string,
  survival_version = as.character(packageVersion("survival")),
  frozen = frozen, tau = tau_of, na_rows = na_rows,
  concordance = conc, calibration_slope = slope, calibration_horizon = calib,
  net_benefit = nb, lr_test = lr
)
writeLines(toJSON(golden, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE),
           file.path(here, "golden_validation.json"))
cat("wrote", file.path(here, "golden_validation.json"), "\n")
